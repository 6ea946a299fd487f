//! Pod addresses of one fake node: a /16 handed out one address at a time.

use std::net::Ipv4Addr;

/// A /16 (`a.b.0.0/16`) without its network and broadcast addresses.
#[derive(Debug)]
pub struct Ipam {
    base: [u8; 2],
    used: Vec<bool>,
    /// Where the next search starts (addresses are not reused at once).
    cursor: usize,
    free: usize,
}

const SIZE: usize = 1 << 16;

impl Ipam {
    /// The range `a.b.0.0/16`.
    pub fn new(a: u8, b: u8) -> Self {
        let mut used = vec![false; SIZE];
        used[0] = true; // network
        used[SIZE - 1] = true; // broadcast
        Ipam {
            base: [a, b],
            used,
            cursor: 1,
            free: SIZE - 2,
        }
    }

    /// The range in CIDR notation.
    pub fn cidr(&self) -> String {
        format!("{}.{}.0.0/16", self.base[0], self.base[1])
    }

    fn index(&self, ip: Ipv4Addr) -> Option<usize> {
        let o = ip.octets();
        if o[0] != self.base[0] || o[1] != self.base[1] {
            return None;
        }
        Some(usize::from(o[2]) << 8 | usize::from(o[3]))
    }

    fn addr(&self, i: usize) -> Ipv4Addr {
        // i < 65536, so both bytes fit.
        let hi = u8::try_from(i >> 8).unwrap_or(0);
        let lo = u8::try_from(i & 0xff).unwrap_or(0);
        Ipv4Addr::new(self.base[0], self.base[1], hi, lo)
    }

    /// A free address, or `None` when the range is full.
    pub fn allocate(&mut self) -> Option<Ipv4Addr> {
        if self.free == 0 {
            return None;
        }
        for step in 0..SIZE {
            let i = (self.cursor + step) % SIZE;
            if !self.used[i] {
                self.used[i] = true;
                self.free -= 1;
                self.cursor = (i + 1) % SIZE;
                return Some(self.addr(i));
            }
        }
        None
    }

    /// Take `ip` if it is in the range and free (adopting a pod after a restart).
    pub fn reserve(&mut self, ip: Ipv4Addr) -> bool {
        match self.index(ip) {
            Some(i) if !self.used[i] => {
                self.used[i] = true;
                self.free -= 1;
                true
            }
            _ => false,
        }
    }

    /// Give `ip` back.
    pub fn release(&mut self, ip: Ipv4Addr) {
        if let Some(i) = self.index(ip) {
            if i != 0 && i != SIZE - 1 && self.used[i] {
                self.used[i] = false;
                self.free += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocates_unique_and_releases() {
        let mut ipam = Ipam::new(10, 128);
        assert_eq!(ipam.cidr(), "10.128.0.0/16");
        let a = ipam.allocate().unwrap();
        let b = ipam.allocate().unwrap();
        assert_eq!(a, Ipv4Addr::new(10, 128, 0, 1));
        assert_eq!(b, Ipv4Addr::new(10, 128, 0, 2));
        ipam.release(a);
        // Not reused at once.
        assert_eq!(ipam.allocate().unwrap(), Ipv4Addr::new(10, 128, 0, 3));
        assert!(!ipam.reserve(b));
        assert!(ipam.reserve(Ipv4Addr::new(10, 128, 7, 7)));
        assert!(!ipam.reserve(Ipv4Addr::new(10, 129, 0, 9)));
    }

    #[test]
    fn fills_up_then_reports_full() {
        let mut ipam = Ipam::new(10, 1);
        let mut n = 0;
        while ipam.allocate().is_some() {
            n += 1;
        }
        assert_eq!(n, SIZE - 2);
        ipam.release(Ipv4Addr::new(10, 1, 3, 4));
        assert_eq!(ipam.allocate(), Some(Ipv4Addr::new(10, 1, 3, 4)));
    }
}
