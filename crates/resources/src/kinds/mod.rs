//! [`BuiltinKind`](crate::typed::BuiltinKind) implementations: each kind's hooks,
//! wiring the defaulting, validation and table modules together.

/// The schema hook every kind shares.
macro_rules! schema {
    () => {
        fn schema(g: &mut schemars::SchemaGenerator) -> schemars::Schema {
            g.subschema_for::<Self>()
        }
    };
}

/// The table hooks, from a columns function and a row function.
macro_rules! table {
    ($cols:path, $row:path) => {
        fn columns() -> Vec<Column> {
            $cols()
        }
        fn row(&self, now: DateTime<Utc>) -> Row {
            $row(self, now)
        }
    };
}

mod apps;
mod batch;
mod core;
mod other;
