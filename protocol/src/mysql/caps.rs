//! Capability flags: what each side of a connection supports, and what
//! sqlmux passes through, masks or keys its pools by.
//!
//! Where this sits in the flow: the client login intersects the client's
//! flags with what sqlmux offers ([`offer_to_client`]); the server login asks
//! the server for the client's behaviour-changing flags, and the pool key of
//! a client is [`PoolCaps::of_client`], so a lease never lands on a server
//! connection whose negotiated flags would change what the client sees.
//!
//! MariaDB reuses the lowest bit (`CLIENT_MYSQL`) as a marker: a MariaDB
//! server clears it and then carries 32 more *extended* capability bits in
//! the last four of the handshake's ten reserved bytes (and the client answers
//! in the last four of the 23 reserved bytes of its response).

/// Old "long password" flag; a MariaDB server clears it (`CLIENT_MYSQL`).
pub const CLIENT_LONG_PASSWORD: u32 = 0x1;
/// Affected rows count the rows matched rather than the rows changed.
pub const CLIENT_FOUND_ROWS: u32 = 0x2;
/// Column definitions carry all flags (always set by modern clients).
pub const CLIENT_LONG_FLAG: u32 = 0x4;
/// The handshake response names a default database.
pub const CLIENT_CONNECT_WITH_DB: u32 = 0x8;
/// Disallows `db.table.column` syntax.
pub const CLIENT_NO_SCHEMA: u32 = 0x10;
/// zlib packet compression.
pub const CLIENT_COMPRESS: u32 = 0x20;
/// ODBC client (no effect).
pub const CLIENT_ODBC: u32 = 0x40;
/// The client may answer LOAD DATA LOCAL INFILE requests.
pub const CLIENT_LOCAL_FILES: u32 = 0x80;
/// The parser ignores spaces before `(`: changes how statements parse.
pub const CLIENT_IGNORE_SPACE: u32 = 0x100;
/// The 4.1 protocol (required by sqlmux).
pub const CLIENT_PROTOCOL_41: u32 = 0x200;
/// `wait_timeout` becomes `interactive_timeout`.
pub const CLIENT_INTERACTIVE: u32 = 0x400;
/// TLS: an SSLRequest precedes the handshake response.
pub const CLIENT_SSL: u32 = 0x800;
/// Do not raise SIGPIPE (client-side only).
pub const CLIENT_IGNORE_SIGPIPE: u32 = 0x1000;
/// Status flags in EOF packets (always set by modern clients).
pub const CLIENT_TRANSACTIONS: u32 = 0x2000;
/// Old flag for the 4.1 protocol.
pub const CLIENT_RESERVED: u32 = 0x4000;
/// 4.1 authentication: length-prefixed auth response (required by sqlmux).
pub const CLIENT_SECURE_CONNECTION: u32 = 0x8000;
/// Several statements per COM_QUERY.
pub const CLIENT_MULTI_STATEMENTS: u32 = 0x1_0000;
/// Several result sets per response (needed for CALL).
pub const CLIENT_MULTI_RESULTS: u32 = 0x2_0000;
/// Several result sets for COM_STMT_EXECUTE.
pub const CLIENT_PS_MULTI_RESULTS: u32 = 0x4_0000;
/// Authentication plugins: plugin names in handshake and response.
pub const CLIENT_PLUGIN_AUTH: u32 = 0x8_0000;
/// Connection attributes follow the handshake response.
pub const CLIENT_CONNECT_ATTRS: u32 = 0x10_0000;
/// The auth response is a length-encoded string (may exceed 255 bytes).
pub const CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA: u32 = 0x20_0000;
/// The client can handle expired passwords.
pub const CLIENT_CAN_HANDLE_EXPIRED_PASSWORDS: u32 = 0x40_0000;
/// OK packets carry session state changes.
pub const CLIENT_SESSION_TRACK: u32 = 0x80_0000;
/// Result sets end with an OK packet (header 0xFE) instead of EOF packets.
pub const CLIENT_DEPRECATE_EOF: u32 = 0x100_0000;
/// MySQL 8: result set metadata may be omitted.
pub const CLIENT_OPTIONAL_RESULTSET_METADATA: u32 = 0x200_0000;
/// MySQL 8: zstd packet compression.
pub const CLIENT_ZSTD_COMPRESSION_ALGORITHM: u32 = 0x400_0000;
/// MySQL 8: COM_QUERY and COM_STMT_EXECUTE carry query attributes.
pub const CLIENT_QUERY_ATTRIBUTES: u32 = 0x800_0000;
/// MySQL 8: multi-factor authentication.
pub const MULTI_FACTOR_AUTHENTICATION: u32 = 0x1000_0000;
/// Capability extension (reserved).
pub const CLIENT_CAPABILITY_EXTENSION: u32 = 0x2000_0000;
/// Verify the server certificate (client-side only).
pub const CLIENT_SSL_VERIFY_SERVER_CERT: u32 = 0x4000_0000;
/// Keep the connection on a failed `mysql_real_connect` (client-side only).
pub const CLIENT_REMEMBER_OPTIONS: u32 = 0x8000_0000;

/// MariaDB extended capability: progress reports (sent as ERR 0xFFFF mid-command).
pub const MARIADB_CLIENT_PROGRESS: u32 = 0x1;
/// MariaDB extended capability: COM_MULTI (obsolete).
pub const MARIADB_CLIENT_COM_MULTI: u32 = 0x2;
/// MariaDB extended capability: COM_STMT_BULK_EXECUTE.
pub const MARIADB_CLIENT_STMT_BULK_OPERATIONS: u32 = 0x4;
/// MariaDB extended capability: extended type info in column definitions.
pub const MARIADB_CLIENT_EXTENDED_METADATA: u32 = 0x8;
/// MariaDB extended capability: COM_STMT_EXECUTE may skip unchanged metadata.
pub const MARIADB_CLIENT_CACHE_METADATA: u32 = 0x10;
/// MariaDB extended capability: bulk execution answers a result set of unit results.
pub const MARIADB_CLIENT_BULK_UNIT_RESULTS: u32 = 0x20;

/// Flags sqlmux removes from every offer and request: compression, query
/// attributes, optional metadata and MFA change the framing or the command
/// layout the proxy reads, and it implements none of them.
pub const MASKED: u32 = CLIENT_COMPRESS
    | CLIENT_ZSTD_COMPRESSION_ALGORITHM
    | CLIENT_QUERY_ATTRIBUTES
    | CLIENT_OPTIONAL_RESULTSET_METADATA
    | MULTI_FACTOR_AUTHENTICATION;

/// MariaDB extended flags sqlmux removes: progress packets would look like
/// errors mid-response, and cached metadata would make one client's
/// COM_STMT_EXECUTE answer depend on what another client ran before.
pub const MARIADB_MASKED: u32 = MARIADB_CLIENT_PROGRESS | MARIADB_CLIENT_CACHE_METADATA;

/// Flags sqlmux requires of clients and servers.
pub const REQUIRED: u32 = CLIENT_PROTOCOL_41 | CLIENT_SECURE_CONNECTION;

/// Flags that change what the server sends or how it parses: two clients
/// may share a server connection only if these are equal.
pub const BEHAVIOUR: u32 = CLIENT_FOUND_ROWS
    | CLIENT_IGNORE_SPACE
    | CLIENT_LOCAL_FILES
    | CLIENT_MULTI_STATEMENTS
    | CLIENT_MULTI_RESULTS
    | CLIENT_PS_MULTI_RESULTS
    | CLIENT_DEPRECATE_EOF;

/// MariaDB extended flags that change what the server sends.
pub const MARIADB_BEHAVIOUR: u32 = MARIADB_CLIENT_STMT_BULK_OPERATIONS
    | MARIADB_CLIENT_EXTENDED_METADATA
    | MARIADB_CLIENT_BULK_UNIT_RESULTS;

/// Flags of a server connection sqlmux always asks for on top of the
/// client's behaviour flags (session tracking is its state oracle).
pub const SERVER_LOGIN: u32 = REQUIRED
    | CLIENT_LONG_PASSWORD
    | CLIENT_LONG_FLAG
    | CLIENT_TRANSACTIONS
    | CLIENT_PLUGIN_AUTH
    | CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA
    | CLIENT_CONNECT_ATTRS
    | CLIENT_SESSION_TRACK;

/// The part of a client's negotiated flags that decides which server
/// connections it may lease: the pool key besides database and user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct PoolCaps {
    /// `caps & BEHAVIOUR`.
    pub client: u32,
    /// `mariadb_caps & MARIADB_BEHAVIOUR`.
    pub mariadb: u32,
}

impl PoolCaps {
    /// The behaviour-changing subset of a client's negotiated flags.
    pub fn of_client(caps: u32, mariadb_caps: u32) -> Self {
        PoolCaps {
            client: caps & BEHAVIOUR,
            mariadb: mariadb_caps & MARIADB_BEHAVIOUR,
        }
    }

    /// Flags to request from a server for clients of this key, given what
    /// the server offered: the key's flags plus [`SERVER_LOGIN`], minus
    /// [`MASKED`]. `CLIENT_SSL` and `CLIENT_CONNECT_WITH_DB` are the login's
    /// business and are added by the caller.
    pub fn server_request(&self, server_caps: u32, server_mariadb: u32) -> (u32, u32) {
        let caps = (self.client | SERVER_LOGIN) & server_caps & !MASKED;
        let ext = self.mariadb & server_mariadb & !MARIADB_MASKED;
        (caps, ext)
    }
}

/// Flags sqlmux offers to clients given the server's flags: the server's
/// minus [`MASKED`] and `CLIENT_SSL` (TLS on the client leg is sqlmux's own
/// setting, added by the caller), always with [`REQUIRED`].
pub fn offer_to_client(server_caps: u32) -> u32 {
    (server_caps & !MASKED & !CLIENT_SSL) | REQUIRED | CLIENT_PLUGIN_AUTH
}

/// Whether a server announced itself as MariaDB (bit 0 clear) and so carries
/// extended capabilities.
#[inline]
pub fn is_mariadb(server_caps: u32) -> bool {
    server_caps & CLIENT_LONG_PASSWORD == 0
}

/// Names of the standard flags, for log lines and error messages.
const NAMES: [&str; 32] = [
    "LONG_PASSWORD",
    "FOUND_ROWS",
    "LONG_FLAG",
    "CONNECT_WITH_DB",
    "NO_SCHEMA",
    "COMPRESS",
    "ODBC",
    "LOCAL_FILES",
    "IGNORE_SPACE",
    "PROTOCOL_41",
    "INTERACTIVE",
    "SSL",
    "IGNORE_SIGPIPE",
    "TRANSACTIONS",
    "RESERVED",
    "SECURE_CONNECTION",
    "MULTI_STATEMENTS",
    "MULTI_RESULTS",
    "PS_MULTI_RESULTS",
    "PLUGIN_AUTH",
    "CONNECT_ATTRS",
    "PLUGIN_AUTH_LENENC_CLIENT_DATA",
    "CAN_HANDLE_EXPIRED_PASSWORDS",
    "SESSION_TRACK",
    "DEPRECATE_EOF",
    "OPTIONAL_RESULTSET_METADATA",
    "ZSTD_COMPRESSION_ALGORITHM",
    "QUERY_ATTRIBUTES",
    "MULTI_FACTOR_AUTHENTICATION",
    "CAPABILITY_EXTENSION",
    "SSL_VERIFY_SERVER_CERT",
    "REMEMBER_OPTIONS",
];

/// The names of the flags set in `caps`, lowest bit first.
pub fn names(caps: u32) -> impl Iterator<Item = &'static str> {
    (0..32)
        .filter(move |bit| caps & (1 << bit) != 0)
        .map(|bit| NAMES[bit])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Flags MariaDB 10.11.19 offered in its handshake (captured).
    const MARIADB_10_11: u32 = 0x81ff_f7fe;

    #[test]
    fn mariadb_handshake_flags_are_recognised() {
        assert!(is_mariadb(MARIADB_10_11));
        assert!(!is_mariadb(MARIADB_10_11 | CLIENT_LONG_PASSWORD));
        assert_eq!(MARIADB_10_11 & REQUIRED, REQUIRED);
        assert_eq!(MARIADB_10_11 & CLIENT_SSL, 0);
    }

    #[test]
    fn offer_masks_compression_and_keeps_the_rest() {
        let offer = offer_to_client(MARIADB_10_11 | CLIENT_SSL | CLIENT_QUERY_ATTRIBUTES);
        assert_eq!(
            offer & (CLIENT_COMPRESS | CLIENT_SSL | CLIENT_QUERY_ATTRIBUTES),
            0
        );
        assert_ne!(offer & CLIENT_DEPRECATE_EOF, 0);
        assert_ne!(offer & CLIENT_SESSION_TRACK, 0);
    }

    #[test]
    fn pool_key_keeps_only_behaviour_flags() {
        // Flags the mariadb CLI sent (captured), plus SSL and CONNECT_WITH_DB.
        let cli = 0x00bf_a28c | CLIENT_SSL;
        let key = PoolCaps::of_client(
            cli,
            MARIADB_CLIENT_PROGRESS | MARIADB_CLIENT_EXTENDED_METADATA,
        );
        assert_eq!(
            key.client,
            CLIENT_LOCAL_FILES
                | CLIENT_MULTI_STATEMENTS
                | CLIENT_MULTI_RESULTS
                | CLIENT_PS_MULTI_RESULTS
        );
        assert_eq!(key.mariadb, MARIADB_CLIENT_EXTENDED_METADATA);
        let (caps, ext) = key.server_request(MARIADB_10_11, 0x1d);
        assert_ne!(caps & CLIENT_SESSION_TRACK, 0);
        assert_eq!(caps & CLIENT_DEPRECATE_EOF, 0);
        assert_eq!(ext, MARIADB_CLIENT_EXTENDED_METADATA);
    }

    #[test]
    fn names_lists_set_flags() {
        let v: Vec<_> = names(CLIENT_FOUND_ROWS | CLIENT_DEPRECATE_EOF).collect();
        assert_eq!(v, ["FOUND_ROWS", "DEPRECATE_EOF"]);
    }
}
