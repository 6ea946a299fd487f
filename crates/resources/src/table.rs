use serde_json::Value;

/// A `TableColumnDefinition`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    /// Shown upper-cased by kubectl: `Name`, `Ready`, `Status`, `Age`.
    pub name: String,
    /// OpenAPI type: `string`, `integer`, `number`, `boolean`, `date`.
    pub type_: String,
    /// OpenAPI format, e.g. `name` for the first column.
    pub format: String,
    pub description: String,
    /// 0: always shown; >0: shown only with `-o wide`.
    pub priority: i32,
}

impl Column {
    pub fn new(name: &str, type_: &str, description: &str) -> Self {
        Column {
            name: name.into(),
            type_: type_.into(),
            format: String::new(),
            description: description.into(),
            priority: 0,
        }
    }
    /// The conventional first column: `Name`, format `name`.
    pub fn name() -> Self {
        Column {
            format: "name".into(),
            ..Column::new("Name", "string", "Name must be unique within a namespace.")
        }
    }
    /// The conventional `Age` column (cell: a human duration such as `5m12s`).
    pub fn age() -> Self {
        Column::new("Age", "string", "CreationTimestamp is a timestamp representing the server time when this object was created.")
    }
    #[must_use]
    pub fn wide(mut self) -> Self {
        self.priority = 1;
        self
    }
}

/// The cells of one table row, in column order.
pub type Row = Vec<Value>;
