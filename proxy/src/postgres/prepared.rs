//! Named prepared statements in transaction mode.
//!
//! Drivers prepare a statement once (`Parse` with a name) and bind it many
//! times, but in transaction mode each transaction may run on a different
//! server. sqlmux therefore keeps, per client, a map from the client's
//! statement name to the statement (query text and parameter types), and
//! gives every distinct statement one server-side name derived from its
//! content (`sqlmux_<16 hex>`), so clients preparing the same query share
//! it. Each server remembers which statements it holds (an LRU bounded by
//! `pool.max_prepared_statements`, evicted with Close). Before a Bind or a
//! Describe reaches a server that lacks the statement, sqlmux injects the
//! Parse and swallows its ParseComplete; a client's Close is answered by
//! sqlmux itself.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::{BufMut, BytesMut};
use sqlmux_protocol::sql::Fingerprint;
use xxhash_rust::xxh3::xxh3_64;

/// A statement a client prepared.
#[derive(Debug)]
pub struct Prepared {
    /// Content id (hash of query text and parameter types).
    pub id: u64,
    /// Name used on servers.
    pub server_name: [u8; 23],
    /// Query text.
    pub query: Box<[u8]>,
    /// Parameter types as sent: u16 count then u32 OIDs.
    pub param_types: Box<[u8]>,
    /// Fingerprint of the normalized query.
    pub fp: Fingerprint,
    /// BEGIN/COMMIT-like statement.
    pub txn_control: bool,
}

impl Prepared {
    /// Builds the statement record for a Parse.
    pub fn new(query: &[u8], param_types: &[u8], fp: Fingerprint, txn_control: bool) -> Prepared {
        let mut key = Vec::with_capacity(query.len() + param_types.len() + 1);
        key.extend_from_slice(query);
        key.push(0);
        key.extend_from_slice(param_types);
        let id = xxh3_64(&key);
        let mut server_name = [0u8; 23];
        server_name[..7].copy_from_slice(b"sqlmux_");
        let hex = format!("{id:016x}");
        server_name[7..].copy_from_slice(hex.as_bytes());
        Prepared {
            id,
            server_name,
            query: query.into(),
            param_types: param_types.into(),
            fp,
            txn_control,
        }
    }

    /// Appends the Parse that creates this statement on a server.
    pub fn write_parse(&self, out: &mut BytesMut) {
        out.put_u8(b'P');
        let len = 4 + self.server_name.len() + 1 + self.query.len() + 1 + self.param_types.len();
        out.put_u32(len as u32);
        out.put_slice(&self.server_name);
        out.put_u8(0);
        out.put_slice(&self.query);
        out.put_u8(0);
        out.put_slice(&self.param_types);
    }
}

/// Appends a Close of a server-side statement.
pub fn write_close(out: &mut BytesMut, server_name: &[u8]) {
    out.put_u8(b'C');
    out.put_u32((4 + 1 + server_name.len() + 1) as u32);
    out.put_u8(b'S');
    out.put_slice(server_name);
    out.put_u8(0);
}

/// Appends a Bind whose statement name is replaced; `rest` is the body after
/// the two names.
pub fn write_bind(out: &mut BytesMut, portal: &[u8], server_name: &[u8], rest: &[u8]) {
    out.put_u8(b'B');
    out.put_u32((4 + portal.len() + 1 + server_name.len() + 1 + rest.len()) as u32);
    out.put_slice(portal);
    out.put_u8(0);
    out.put_slice(server_name);
    out.put_u8(0);
    out.put_slice(rest);
}

/// Appends a Describe of a server-side statement.
pub fn write_describe(out: &mut BytesMut, server_name: &[u8]) {
    out.put_u8(b'D');
    out.put_u32((4 + 1 + server_name.len() + 1) as u32);
    out.put_u8(b'S');
    out.put_slice(server_name);
    out.put_u8(0);
}

/// A client's named statements.
#[derive(Debug, Default)]
pub struct ClientStatements {
    by_name: HashMap<Box<[u8]>, Arc<Prepared>>,
}

impl ClientStatements {
    /// The statement a name refers to.
    #[inline]
    pub fn get(&self, name: &[u8]) -> Option<&Arc<Prepared>> {
        self.by_name.get(name)
    }

    /// Defines a name; false if it already exists.
    pub fn insert(&mut self, name: &[u8], stmt: Arc<Prepared>) -> bool {
        if self.by_name.contains_key(name) {
            return false;
        }
        self.by_name.insert(name.into(), stmt);
        true
    }

    /// Forgets a name.
    pub fn remove(&mut self, name: &[u8]) -> Option<Arc<Prepared>> {
        self.by_name.remove(name)
    }

    /// Forgets every name (DEALLOCATE ALL, DISCARD ALL).
    pub fn clear(&mut self) {
        self.by_name.clear();
    }

    /// Number of names.
    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    /// True when no statement is defined.
    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }
}

/// The statements one server holds: content id to server name.
pub type ServerStatements = crate::session::statements::ServerStatements<[u8; 23]>;

#[cfg(test)]
mod tests {
    use super::*;
    use sqlmux_protocol::postgres::frame::complete_frame;
    use sqlmux_protocol::postgres::message::{decode_bind_names, decode_parse};

    #[test]
    fn same_content_same_server_name() {
        let a = Prepared::new(b"select $1", &[0, 1, 0, 0, 0, 23], Fingerprint(1), false);
        let b = Prepared::new(b"select $1", &[0, 1, 0, 0, 0, 23], Fingerprint(1), false);
        let c = Prepared::new(b"select $1", &[0, 0], Fingerprint(1), false);
        assert_eq!(a.server_name, b.server_name);
        assert_ne!(a.server_name, c.server_name);
        assert!(a.server_name.starts_with(b"sqlmux_"));
    }

    #[test]
    fn rewritten_frames_decode() {
        let p = Prepared::new(b"select $1", &[0, 1, 0, 0, 0, 23], Fingerprint(1), false);
        let mut out = BytesMut::new();
        p.write_parse(&mut out);
        let (h, body) = complete_frame(&out, 1 << 20).unwrap().unwrap();
        assert_eq!(h.frame_len(), out.len());
        let parsed = decode_parse(body).unwrap();
        assert_eq!(parsed.name, &p.server_name);
        assert_eq!(parsed.query, b"select $1");
        let mut out = BytesMut::new();
        write_bind(&mut out, b"", &p.server_name, &[0, 0, 0, 0, 0, 0]);
        let (h, body) = complete_frame(&out, 1 << 20).unwrap().unwrap();
        assert_eq!(h.frame_len(), out.len());
        let (portal, stmt, off) = decode_bind_names(body).unwrap();
        assert_eq!(
            (portal, stmt, &body[off..]),
            (&b""[..], &p.server_name[..], &[0u8, 0, 0, 0, 0, 0][..])
        );
    }
}
