//! Server-side prepared statements (COM_STMT_*) in transaction pooling.
//!
//! A statement id belongs to one server connection, but a client's next
//! COM_STMT_EXECUTE may run on another server. So sqlmux gives each client
//! ids of its own ([`ClientStatements`]), and each distinct statement (query
//! text, default schema and the client's session variables: its
//! [content id](content_id)) is prepared once per server, lazily, on the
//! first server that must run it; every server remembers which statements
//! it holds and under which id ([`MyServer::stmts`](super::server::MyServer),
//! bounded by `pool.max_prepared_statements`, evicted with COM_STMT_CLOSE).
//!
//! The answer to a COM_STMT_PREPARE (prepare OK, parameter and column
//! definitions) is kept per pool ([`MetaCache`]): a client preparing a
//! statement some client of the pool prepared before is answered without a
//! server. Parameter types a client sent with one EXECUTE are kept for the
//! next one that omits them, and COM_STMT_SEND_LONG_DATA is held until the
//! EXECUTE it belongs to: the server that runs the EXECUTE gets both.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::BytesMut;
use sqlmux_protocol::mysql::packet::HEADER_LEN;
use sqlmux_protocol::mysql::stmt::LAST_PREPARED;
use xxhash_rust::xxh3::Xxh3;

use super::analysis::Statement;
use super::session_state::SessionVars;

/// A statement as its first server described it.
#[derive(Debug)]
pub struct StmtMeta {
    /// Content id (see [`content_id`]).
    pub id: u64,
    /// Query text.
    pub query: Box<[u8]>,
    /// Parameter placeholders.
    pub params: u16,
    /// Default schema when it was prepared: names in the query resolve
    /// there on every server, as MySQL re-prepares in it.
    pub schema: Option<Box<str>>,
    /// What the query text means to sqlmux (fingerprint, pins).
    pub statement: Statement,
    /// The prepare response as the server sent it (headers included).
    response: Box<[u8]>,
}

impl StmtMeta {
    /// A statement's description from its prepare response.
    pub fn new(
        (id, schema): (u64, Option<Box<str>>),
        query: &[u8],
        params: u16,
        statement: Statement,
        response: &[u8],
    ) -> StmtMeta {
        StmtMeta {
            id,
            query: query.into(),
            params,
            schema,
            statement,
            response: response.into(),
        }
    }

    /// Appends the prepare response with the client's statement id.
    pub fn write_response(&self, out: &mut BytesMut, client_id: u32) {
        let at = out.len();
        out.extend_from_slice(&self.response);
        let id = at + HEADER_LEN + 1;
        out[id..id + 4].copy_from_slice(&client_id.to_le_bytes());
    }
}

/// What makes two prepared statements the same: the query text, the
/// default schema it is parsed in, and the session variables (sql_mode,
/// character sets) that change its parse and its metadata.
pub fn content_id(query: &[u8], vars: &SessionVars) -> u64 {
    let mut h = Xxh3::new();
    h.update(query);
    h.update(&[0]);
    if let Some(schema) = &vars.schema {
        h.update(schema.as_bytes());
    }
    for (name, value) in &vars.vars {
        h.update(&[0]);
        h.update(name.as_bytes());
        h.update(&[0]);
        h.update(value.as_bytes());
    }
    h.digest()
}

/// Long data held for one EXECUTE: parameter number and bytes, in order.
pub type LongData = Vec<(u16, Box<[u8]>)>;

/// One statement a client prepared.
#[derive(Debug)]
pub struct ClientStmt {
    /// The statement.
    pub meta: Arc<StmtMeta>,
    /// Parameter types from the client's last EXECUTE that sent them.
    pub types: Option<Box<[u8]>>,
    /// COM_STMT_SEND_LONG_DATA held for the next EXECUTE: parameter, data.
    pub long_data: LongData,
    /// Long data bytes held, or None once they passed the limit (the
    /// EXECUTE then gets an ERR, as from a server).
    pub long_bytes: Option<usize>,
}

impl ClientStmt {
    /// Holds a piece of long data unless the total would exceed `max`.
    pub fn hold_long_data(&mut self, param: u16, data: &[u8], max: usize) {
        let total = self
            .long_bytes
            .map(|n| n + data.len())
            .filter(|&n| n <= max);
        self.long_bytes = total;
        match total {
            Some(_) => self.long_data.push((param, data.into())),
            None => self.long_data = Vec::new(),
        }
    }

    /// Takes the held long data for an EXECUTE; None if it overflowed.
    pub fn take_long_data(&mut self) -> Option<LongData> {
        let ok = self.long_bytes.is_some();
        self.long_bytes = Some(0);
        let held = std::mem::take(&mut self.long_data);
        ok.then_some(held)
    }
}

/// A client's statements by the ids sqlmux gave it.
#[derive(Debug, Default)]
pub struct ClientStatements {
    by_id: HashMap<u32, ClientStmt>,
    last_id: u32,
}

impl ClientStatements {
    /// Gives the client an id for `meta`.
    pub fn add(&mut self, meta: Arc<StmtMeta>) -> u32 {
        self.last_id = self.last_id.wrapping_add(1).max(1);
        if self.last_id == LAST_PREPARED {
            self.last_id = 1;
        }
        let stmt = ClientStmt {
            meta,
            types: None,
            long_data: Vec::new(),
            long_bytes: Some(0),
        };
        self.by_id.insert(self.last_id, stmt);
        self.last_id
    }

    /// The id an id names: itself, or for [`LAST_PREPARED`] the newest.
    #[inline]
    pub fn resolve(&self, id: u32) -> u32 {
        if id == LAST_PREPARED {
            self.last_id
        } else {
            id
        }
    }

    /// The statement an id names (see [`Self::resolve`]).
    pub fn get_mut(&mut self, id: u32) -> Option<&mut ClientStmt> {
        self.by_id.get_mut(&self.resolve(id))
    }

    /// Forgets a statement (COM_STMT_CLOSE).
    pub fn remove(&mut self, id: u32) -> Option<ClientStmt> {
        self.by_id.remove(&self.resolve(id))
    }

    /// Forgets every statement (COM_RESET_CONNECTION).
    pub fn clear(&mut self) {
        self.by_id = HashMap::new();
    }

    /// Statements held.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// True when the client holds none.
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }
}

/// Prepare responses of a pool's statements by content id, bounded.
#[derive(Debug)]
pub struct MetaCache {
    map: Mutex<HashMap<u64, Arc<StmtMeta>>>,
    max: usize,
}

impl MetaCache {
    /// A cache of at most `max` statements (0: nothing is kept).
    pub fn new(max: usize) -> MetaCache {
        MetaCache {
            map: Mutex::new(HashMap::new()),
            max,
        }
    }

    /// The statement with this content id, if a client prepared it before.
    pub fn get(&self, id: u64) -> Option<Arc<StmtMeta>> {
        self.map.lock().ok()?.get(&id).cloned()
    }

    /// Keeps a statement; when full, an arbitrary one makes room.
    pub fn insert(&self, meta: Arc<StmtMeta>) {
        let Ok(mut map) = self.map.lock() else {
            return;
        };
        if map.len() >= self.max
            && let Some(&k) = map.keys().next()
        {
            map.remove(&k);
        }
        if self.max > 0 {
            map.insert(meta.id, meta);
        }
    }

    /// Statements kept.
    pub fn len(&self) -> usize {
        self.map.lock().map_or(0, |m| m.len())
    }

    /// True when none is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(query: &[u8]) -> Arc<StmtMeta> {
        // Prepare OK for server statement 7, no parameters, no columns.
        let response = [12, 0, 0, 1, 0, 7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        let id = content_id(query, &SessionVars::default());
        let key = (id, None);
        Arc::new(StmtMeta::new(
            key,
            query,
            0,
            Statement::default(),
            &response,
        ))
    }

    #[test]
    fn the_response_carries_the_client_id() {
        let mut out = BytesMut::from(&b"xx"[..]);
        meta(b"select 1").write_response(&mut out, 0x0102);
        assert_eq!(
            &out[2..],
            &[12, 0, 0, 1, 0, 2, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0]
        );
    }

    #[test]
    fn content_depends_on_schema_and_variables() {
        let mut vars = SessionVars::default();
        let plain = content_id(b"select 1", &vars);
        vars.schema = Some("a".into());
        let in_a = content_id(b"select 1", &vars);
        vars.vars.insert("sql_mode".into(), "ANSI_QUOTES".into());
        let ansi = content_id(b"select 1", &vars);
        assert!(plain != in_a && in_a != ansi && plain != ansi);
        assert_eq!(ansi, content_id(b"select 1", &vars));
    }

    #[test]
    fn client_ids_are_its_own() {
        let mut c = ClientStatements::default();
        let a = c.add(meta(b"a"));
        let b = c.add(meta(b"b"));
        assert_eq!((a, b), (1, 2));
        assert_eq!(&*c.get_mut(LAST_PREPARED).unwrap().meta.query, b"b");
        assert!(c.remove(a).is_some() && c.get_mut(a).is_none());
        c.clear();
        assert!(c.is_empty());
    }

    #[test]
    fn long_data_is_bounded() {
        let mut c = ClientStatements::default();
        let id = c.add(meta(b"a"));
        let s = c.get_mut(id).unwrap();
        s.hold_long_data(0, b"abc", 5);
        assert_eq!(s.take_long_data().map(|v| v.len()), Some(1));
        s.hold_long_data(0, b"abc", 5);
        s.hold_long_data(0, b"abc", 5);
        assert_eq!(s.take_long_data(), None, "over the limit");
        assert_eq!(s.take_long_data(), Some(Vec::new()), "reset after");
    }

    #[test]
    fn cache_is_bounded() {
        let cache = MetaCache::new(2);
        for q in [&b"a"[..], b"b", b"c"] {
            cache.insert(meta(q));
        }
        assert_eq!(cache.len(), 2);
        let m = meta(b"c");
        assert!(cache.get(m.id).is_some());
        assert!(MetaCache::new(0).is_empty());
    }
}
