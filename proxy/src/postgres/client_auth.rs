//! Client authentication against `[[users]]` (SCRAM-SHA-256, md5 or
//! trust), and users looked up on the server with `postgres.auth_query`.

use std::sync::Arc;

use ring::rand::{SecureRandom, SystemRandom};
use sqlmux_protocol::postgres::auth::{ScramError, ScramServer, md5_matches};
use sqlmux_protocol::postgres::message::{self};

use super::login::Conn;
use super::params::{self};
use super::{Rejected, server};
use crate::Shared;
use crate::auth::{AuthUser, ScramKeys};
use crate::config::AuthMethod;

/// Finds the secret of a user missing from `[[users]]` on the server,
/// through `postgres.auth_user` and `postgres.auth_query`, at every login
/// (a changed password works at once). Never logs the secret.
pub(super) async fn lookup_user(
    shared: &Arc<Shared>,
    cfg: &crate::config::Config,
    users: &crate::auth::Users,
    db: &crate::config::DatabaseConfig,
    user: &str,
) -> Result<Arc<AuthUser>, (&'static str, String)> {
    let auth_name = cfg.postgres.auth_user.as_deref().unwrap_or_default();
    let Some(auth) = users.get(auth_name).cloned() else {
        return Err((
            "28000",
            format!(
                "postgres.auth_user \"{auth_name}\" has no [[users]] entry; sqlmux cannot look up user \"{user}\""
            ),
        ));
    };
    let connector = server::PgConnector {
        host: db.host.clone(),
        port: db.port,
        dbname: cfg
            .postgres
            .auth_dbname
            .clone()
            .unwrap_or_else(|| db.dbname.clone()),
        login: server::ServerLogin::ClientUser(auth),
        timeout: cfg.general.server_connect_timeout,
        tls: crate::tls::connector(db.server_tls.mode, db.server_tls.ca.as_deref()),
        tls_mode: db.server_tls.mode,
    };
    let mut server = connector.connect_once().await.map_err(|e| {
        (
            "08006",
            format!("cannot look up user \"{user}\": {}", e.message),
        )
    })?;
    let mut literal = String::new();
    params::quote_literal(&mut literal, user);
    let sql = cfg.postgres.auth_query.replace("$1", &literal);
    let rows = tokio::time::timeout(cfg.general.server_connect_timeout, server.query_rows(&sql))
        .await
        .map_err(|_| ("08006", format!("looking up user \"{user}\" timed out")))?
        .map_err(|e| ("08006", format!("looking up user \"{user}\" failed: {e}")))?
        .map_err(|e| ("28000", format!("postgres.auth_query failed: {e}")))?;
    let Some(row) = rows.into_iter().next() else {
        return Err((
            "28000",
            format!(
                "no such user \"{user}\" (not in [[users]] and not found by postgres.auth_query)"
            ),
        ));
    };
    let Some(secret) = row.get(1).cloned().flatten() else {
        return Err((
            "28P01",
            format!(
                "password authentication failed for user \"{user}\": the server has no password for this user"
            ),
        ));
    };
    tracing::debug!(user, database = %db.name, "user found through auth_query");
    Ok(shared.auth_cache.put(&db.name, user, &secret))
}

/// Runs the configured authentication exchange.
pub(super) async fn authenticate(
    shared: &Shared,
    conn: &mut Conn,
    user: &Arc<AuthUser>,
    method: AuthMethod,
) -> Result<(), Rejected> {
    let failed_msg = format!("password authentication failed for user \"{}\"", user.name);
    if method == AuthMethod::Trust {
        return Ok(());
    }
    let use_scram = match method {
        AuthMethod::ScramSha256 => user.scram_verifier().is_some(),
        AuthMethod::Md5 => user.md5().is_none() && user.scram_verifier().is_some(),
        AuthMethod::Trust => unreachable!(),
    };
    if use_scram {
        let verifier = user.scram_verifier().expect("checked").clone();
        message::auth_sasl(&mut conn.out, &["SCRAM-SHA-256"]);
        conn.flush().await?;
        let body = conn.read_message(b'p').await?;
        let mut b = &body[..];
        let mech = message::take_cstr(&mut b).unwrap_or_default();
        if mech != b"SCRAM-SHA-256" || b.len() < 4 {
            conn.fatal(
                "28000",
                "unsupported SASL mechanism: sqlmux offers SCRAM-SHA-256",
                None,
            )
            .await;
            return Err(Rejected);
        }
        let data = &b[4..];
        let mut scram = ScramServer::new(verifier.clone());
        let first = match scram.client_first(data) {
            Ok(f) => f,
            Err(e) => {
                conn.fatal("08P01", &format!("invalid SCRAM message: {e}"), None)
                    .await;
                return Err(Rejected);
            }
        };
        message::auth_sasl_continue(&mut conn.out, &first);
        conn.flush().await?;
        let body = conn.read_message(b'p').await?;
        match scram.client_final(&body) {
            Ok((final_msg, client_key)) => {
                message::auth_sasl_final(&mut conn.out, &final_msg);
                user.learn_scram_keys(ScramKeys {
                    client_key,
                    server_key: verifier.server_key,
                });
                Ok(())
            }
            Err(ScramError::BadProof) => {
                let failed = ("28P01", failed_msg.as_str());
                Err(conn.login_failed(shared, &user.name, failed, None).await)
            }
            Err(e) => {
                conn.fatal("08P01", &format!("invalid SCRAM message: {e}"), None)
                    .await;
                Err(Rejected)
            }
        }
    } else if let Some(stored) = user.md5() {
        let mut salt = [0u8; 4];
        let _ = SystemRandom::new().fill(&mut salt);
        message::auth_md5(&mut conn.out, salt);
        conn.flush().await?;
        let body = conn.read_message(b'p').await?;
        let resp = body.strip_suffix(&[0]).unwrap_or(&body);
        if md5_matches(stored, salt, resp) {
            Ok(())
        } else {
            let failed = ("28P01", failed_msg.as_str());
            Err(conn.login_failed(shared, &user.name, failed, None).await)
        }
    } else {
        let msg = format!(
            "password authentication failed for user \"{}\": no password is configured for this user in sqlmux",
            user.name
        );
        let hint = "set a password in its [[users]] entry, or use postgres.auth = \"trust\"";
        Err(conn
            .login_failed(shared, &user.name, ("28P01", &msg), Some(hint))
            .await)
    }
}
