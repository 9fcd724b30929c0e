//! The psql console: pgwire handlers for login and the simple query
//! protocol.
//!
//! Login: the database must be `sqlmux` or `pgbouncer`; the user must be in
//! `admin.users` or `admin.stats_users` (read from the configuration current
//! at login) and in `[[users]]`. Users with a SCRAM verifier (or a plain
//! password, from which one is derived at load) log in with SCRAM-SHA-256;
//! users that only have an md5 hash log in with md5. A user without any
//! password is let in only when `postgres.auth = "trust"`.
//!
//! Queries: simple protocol only, like PgBouncer; Parse is refused with an
//! error that says so. Whether a user may run a control command is decided
//! per command from the current configuration, so RELOAD can revoke it.

use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;
use futures::SinkExt;
use futures::sink::Sink;
use pgwire::api::auth::driver::AuthOutcome;
use pgwire::api::auth::md5pass::Md5PasswordAuth;
use pgwire::api::auth::mechanism::AuthMechanismFactory;
use pgwire::api::auth::sasl::scram::{ScramAuth, ScramSecret};
use pgwire::api::auth::{
    AuthDriver, AuthSource, DefaultServerParameterProvider, LoginInfo, Password, StartupHandler,
    protocol_negotiation, save_startup_parameters_to_metadata,
};
use pgwire::api::portal::Portal;
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::results::{Response, Tag};
use pgwire::api::stmt::NoopQueryParser;
use pgwire::api::store::PortalStore;
use pgwire::api::{
    ClientInfo as WireClient, ClientPortalStore, METADATA_DATABASE, METADATA_USER,
    PgWireServerHandlers,
};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::extendedquery::Parse;
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use tokio::net::TcpStream;

use super::command::{self, Command, Show};
use super::{AdminState, control, insight, show};
use crate::Shared;
use crate::config::{AuthMethod, Config};

/// The virtual database names of the console.
pub const CONSOLE_DATABASES: [&str; 2] = ["sqlmux", "pgbouncer"];

/// An ERROR sqlmux sends on the console: SQLSTATE and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminError {
    /// SQLSTATE.
    pub code: &'static str,
    /// What went wrong and how to fix it.
    pub message: String,
}

impl AdminError {
    /// An ERROR with a SQLSTATE and message.
    pub fn new(code: &'static str, message: String) -> AdminError {
        AdminError { code, message }
    }
}

impl From<AdminError> for ErrorInfo {
    fn from(e: AdminError) -> ErrorInfo {
        ErrorInfo::new("ERROR".to_owned(), e.code.to_owned(), e.message)
    }
}

fn fatal(code: &str, message: String) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "FATAL".to_owned(),
        code.to_owned(),
        message,
    )))
}

/// What a console user may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// `admin.users`: everything.
    Admin,
    /// `admin.stats_users`: SHOW only.
    Stats,
}

/// The role of `user` in `cfg`, if any.
pub fn role_of(cfg: &Config, user: &str) -> Option<Role> {
    if cfg.admin.users.iter().any(|u| u == user) {
        Some(Role::Admin)
    } else if cfg.admin.stats_users.iter().any(|u| u == user) {
        Some(Role::Stats)
    } else {
        None
    }
}

/// Serves one console connection until it closes.
pub(crate) async fn serve(shared: Arc<Shared>, admin: Arc<AdminState>, tcp: TcpStream) {
    let tls = (**shared.admin_tls.load()).clone();
    let handlers = Arc::new(Handlers::new(shared, admin));
    if let Err(e) = pgwire::tokio::process_socket(tcp, tls, handlers).await {
        tracing::debug!(error = %e, "admin console connection ended with an error");
    }
}

/// The handler set of one connection.
struct Handlers {
    startup: Arc<Startup>,
    query: Arc<Query>,
    extended: Arc<RefuseExtended>,
}

impl Handlers {
    fn new(shared: Arc<Shared>, admin: Arc<AdminState>) -> Handlers {
        let secrets = Arc::new(Secrets {
            shared: shared.clone(),
        });
        let mut params = DefaultServerParameterProvider::default();
        params.server_version = format!("16.0 ({})", show::version_string());
        params.time_zone = "UTC".to_owned();
        Handlers {
            startup: Arc::new(Startup {
                shared: shared.clone(),
                driver: AuthDriver::new(Arc::new(params)),
                scram: ScramAuth::new(secrets.clone()),
                md5: Md5PasswordAuth::new(secrets),
            }),
            query: Arc::new(Query { shared, admin }),
            extended: Arc::new(RefuseExtended),
        }
    }
}

impl PgWireServerHandlers for Handlers {
    fn simple_query_handler(&self) -> Arc<impl SimpleQueryHandler> {
        self.query.clone()
    }

    fn extended_query_handler(&self) -> Arc<impl ExtendedQueryHandler> {
        self.extended.clone()
    }

    fn startup_handler(&self) -> Arc<impl StartupHandler> {
        self.startup.clone()
    }
}

/// Secrets of `[[users]]` for pgwire's SCRAM and md5 mechanisms.
#[derive(Debug)]
struct Secrets {
    shared: Arc<Shared>,
}

impl Secrets {
    fn user(&self, login: &LoginInfo) -> PgWireResult<Arc<crate::auth::AuthUser>> {
        let name = login.user().unwrap_or_default();
        self.shared
            .users
            .load()
            .get(name)
            .cloned()
            .ok_or_else(|| PgWireError::InvalidPassword(name.to_owned()))
    }
}

#[async_trait]
impl AuthSource for Secrets {
    /// md5: the expected response for a fresh random salt.
    async fn get_password(&self, login: &LoginInfo) -> PgWireResult<Password> {
        let user = self.user(login)?;
        let md5 = user
            .md5()
            .ok_or_else(|| PgWireError::InvalidPassword(user.name.clone()))?;
        let mut salt = [0u8; 4];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut salt).map_err(
            |_| {
                PgWireError::ApiError(Box::new(std::io::Error::other(
                    "no random bytes for the md5 salt",
                )))
            },
        )?;
        let expected = sqlmux_protocol::postgres::auth::md5_salted(md5, salt);
        Ok(Password::new(Some(salt.to_vec()), expected.into_bytes()))
    }

    /// SCRAM: the user's verifier, so the password is never needed.
    async fn get_scram_secret(&self, login: &LoginInfo) -> PgWireResult<(ScramSecret, Option<()>)> {
        let user = self.user(login)?;
        let v = user
            .scram_verifier()
            .ok_or_else(|| PgWireError::InvalidPassword(user.name.clone()))?;
        Ok((
            ScramSecret::Verifier {
                salt: v.salt.clone(),
                iterations: v.iterations as usize,
                stored_key: v.stored_key.to_vec(),
                server_key: v.server_key.to_vec(),
            },
            None,
        ))
    }
}

/// Login: checks database and user, then runs SCRAM or md5.
struct Startup {
    shared: Arc<Shared>,
    driver: AuthDriver<Arc<DefaultServerParameterProvider>>,
    scram: ScramAuth,
    md5: Md5PasswordAuth<Secrets>,
}

impl Startup {
    /// Refusals before any password exchange (`Err` is sent as FATAL).
    fn check_login(&self, user: &str, database: &str) -> PgWireResult<Mechanism> {
        let cfg = self.shared.config.load();
        if user.is_empty() {
            return Err(fatal(
                "28000",
                "no user name given; connect as one of admin.users or admin.stats_users".into(),
            ));
        }
        if !CONSOLE_DATABASES.contains(&database) {
            return Err(fatal(
                "3D000",
                format!(
                    "database \"{database}\" does not exist on the admin port; connect to database \"sqlmux\" (or \"pgbouncer\")"
                ),
            ));
        }
        if role_of(&cfg, user).is_none() {
            return Err(fatal(
                "28000",
                format!(
                    "user \"{user}\" is not an admin or stats user; add it to admin.users or admin.stats_users"
                ),
            ));
        }
        let users = self.shared.users.load();
        let Some(u) = users.get(user) else {
            return Err(fatal(
                "28000",
                format!("admin user \"{user}\" has no [[users]] entry; add one with a password"),
            ));
        };
        if u.scram_verifier().is_some() {
            Ok(Mechanism::Scram)
        } else if u.md5().is_some() {
            Ok(Mechanism::Md5)
        } else if cfg.postgres.auth == AuthMethod::Trust {
            Ok(Mechanism::Trust)
        } else {
            Err(fatal(
                "28000",
                format!(
                    "admin user \"{user}\" has no password in [[users]]; the admin console needs one"
                ),
            ))
        }
    }
}

/// How a console user proves who they are.
#[derive(Debug, Clone, Copy)]
enum Mechanism {
    Scram,
    Md5,
    Trust,
}

/// The login user of a connection.
fn user_of<C: WireClient>(client: &C) -> String {
    client
        .metadata()
        .get(METADATA_USER)
        .cloned()
        .unwrap_or_default()
}

/// pgwire reports a failed SCRAM proof for user ""; name the user.
fn password_failed(e: PgWireError, user: &str) -> PgWireError {
    match e {
        PgWireError::InvalidPassword(_) => {
            tracing::info!(user = %user, "admin login refused: wrong password");
            fatal(
                "28P01",
                format!("password authentication failed for user \"{user}\""),
            )
        }
        other => other,
    }
}

#[async_trait]
impl StartupHandler for Startup {
    async fn on_startup<C>(
        &self,
        client: &mut C,
        message: PgWireFrontendMessage,
    ) -> PgWireResult<()>
    where
        C: WireClient + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let outcome = match message {
            PgWireFrontendMessage::Startup(ref startup) => {
                protocol_negotiation(client, startup).await?;
                save_startup_parameters_to_metadata(client, startup);
                let user = user_of(client);
                let database = client
                    .metadata()
                    .get(METADATA_DATABASE)
                    .cloned()
                    .unwrap_or_else(|| user.clone());
                let mechanism = self.check_login(&user, &database).inspect_err(|e| {
                    tracing::info!(user = %user, database = %database, peer = %client.socket_addr(), error = %e, "admin login refused");
                })?;
                let mech = match mechanism {
                    Mechanism::Scram => self.scram.create(),
                    Mechanism::Md5 => self.md5.create(),
                    Mechanism::Trust => {
                        tracing::info!(user = %user, peer = %client.socket_addr(), "admin console login (trust)");
                        return self.driver.complete_authentication(client, None).await;
                    }
                };
                self.driver
                    .begin_authentication(client, mech)
                    .await
                    .map_err(|e| password_failed(e, &user))?
            }
            PgWireFrontendMessage::PasswordMessageFamily(m) => {
                let user = user_of(client);
                self.driver
                    .advance_authentication(client, m)
                    .await
                    .map_err(|e| password_failed(e, &user))?
            }
            _ => return Ok(()),
        };
        match outcome {
            AuthOutcome::InProgress => Ok(()),
            AuthOutcome::Authenticated { final_message, .. } => {
                tracing::info!(user = %user_of(client), peer = %client.socket_addr(), "admin console login");
                self.driver
                    .complete_authentication(client, final_message)
                    .await
            }
        }
    }
}

/// Runs console commands.
struct Query {
    shared: Arc<Shared>,
    admin: Arc<AdminState>,
}

const HELP: &str = "\
SHOW HELP|CONFIG|DATABASES|POOLS|CLIENTS|SERVERS|USERS|VERSION|STATE
SHOW STATS|STATS_TOTALS|STATS_AVERAGES|TOTALS|LISTS
SHOW STATEMENTS|N_PLUS_ONE|LEAKS
SHOW HISTOGRAM <fingerprint>
RESET STATEMENTS
PAUSE [<db>]
RESUME [<db>]
RECONNECT [<db>]
KILL [<db>]
RELOAD
SHUTDOWN";

impl Query {
    /// One command; `Err` is sent as an ERROR.
    async fn run(&self, user: &str, stmt: &str) -> Result<Response, AdminError> {
        let cmd = command::parse(stmt).map_err(|e| AdminError::new("42601", e.0))?;
        let cfg = self.shared.config.load_full();
        let role = role_of(&cfg, user).ok_or_else(|| {
            AdminError::new(
                "42501",
                format!("permission denied: \"{user}\" is no longer an admin or stats user"),
            )
        })?;
        if cmd.needs_admin() && role != Role::Admin {
            return Err(AdminError::new(
                "42501",
                format!(
                    "permission denied: {} requires an admin user (\"{user}\" is in admin.stats_users, which may only run SHOW)",
                    cmd.name()
                ),
            ));
        }
        if cmd.needs_admin() {
            tracing::info!(user = %user, command = %stmt, "admin command");
        }
        let table = |t: super::table::Table| t.into_response("SHOW").map_err(internal);
        let done = |tag: &str| Ok(Response::Execution(Tag::new(tag)));
        let shared = &*self.shared;
        match cmd {
            Command::Show(s) => table(match s {
                Show::Help => return done("SHOW"),
                Show::Pools => show::pools(shared),
                Show::Clients => show::clients(shared),
                Show::Servers => show::servers(shared),
                Show::Stats => show::stats(shared, &self.admin, show::StatsView::Both),
                Show::StatsTotals => show::stats(shared, &self.admin, show::StatsView::Totals),
                Show::StatsAverages => show::stats(shared, &self.admin, show::StatsView::Averages),
                Show::Totals => show::totals(shared, &self.admin),
                Show::Databases => show::databases(shared),
                Show::Config => show::config(shared),
                Show::Lists => show::lists(shared),
                Show::Users => show::users(shared),
                Show::Version => show::version(),
                Show::State => show::state(shared),
                Show::Statements => insight::statements(&shared.insight),
                Show::NPlusOne => insight::n_plus_one(&shared.insight),
                Show::Leaks => insight::leaks(&shared.insight),
            }),
            Command::Histogram(fp) => match insight::histogram(&shared.insight, &fp) {
                Ok(t) => table(t),
                Err(insight::HistogramError::BadFingerprint(f)) => Err(AdminError::new(
                    "22023",
                    format!(
                        "\"{f}\" is not a fingerprint; give the 16 hex digits SHOW STATEMENTS prints"
                    ),
                )),
                Err(insight::HistogramError::Unknown(f)) => Err(AdminError::new(
                    "42704",
                    format!(
                        "fingerprint {f} is not tracked (never seen, reset, or folded into \"other\"); SHOW STATEMENTS lists the tracked ones"
                    ),
                )),
            },
            Command::FakeSetting(name, value) => {
                let mut t = super::table::Table::new(&[(name, super::table::ColType::Text)]);
                t.push(vec![super::table::Cell::text(value)]);
                table(t)
            }
            Command::Set => done("SET"),
            Command::ResetStatements => {
                control::reset_statements(shared);
                done("RESET")
            }
            Command::Pause(db) => {
                control::pause(shared, db.as_deref()).await?;
                done("PAUSE")
            }
            Command::Resume(db) => {
                control::resume(shared, db.as_deref())?;
                done("RESUME")
            }
            Command::Reconnect(db) => {
                control::reconnect(shared, db.as_deref())?;
                done("RECONNECT")
            }
            Command::Kill(db) => {
                control::kill(shared, db.as_deref()).await?;
                done("KILL")
            }
            Command::Reload => {
                control::reload(shared)?;
                done("RELOAD")
            }
            Command::Shutdown => {
                control::shutdown(&self.shared);
                done("SHUTDOWN")
            }
        }
    }
}

fn internal(e: PgWireError) -> AdminError {
    AdminError::new("XX000", format!("internal error building the result: {e}"))
}

#[async_trait]
impl SimpleQueryHandler for Query {
    async fn do_query<C>(&self, client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: WireClient + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let user = user_of(client);
        let mut out = Vec::new();
        for stmt in command::split_statements(query) {
            if matches!(command::parse(stmt), Ok(Command::Show(Show::Help))) {
                // PgBouncer answers SHOW HELP with a NOTICE.
                let mut notice = ErrorInfo::new(
                    "NOTICE".to_owned(),
                    "00000".to_owned(),
                    "Console usage".into(),
                );
                notice.detail = Some(HELP.to_owned());
                client
                    .send(PgWireBackendMessage::NoticeResponse(notice.into()))
                    .await?;
            }
            match self.run(&user, stmt).await {
                Ok(r) => out.push(r),
                Err(e) => {
                    out.push(Response::Error(Box::new(e.into())));
                    break;
                }
            }
        }
        if out.is_empty() {
            out.push(Response::EmptyQuery);
        }
        Ok(out)
    }
}

/// Refuses the extended query protocol with a clear error.
struct RefuseExtended;

fn extended_refused() -> PgWireError {
    PgWireError::UserError(Box::new(
        AdminError::new(
            "0A000",
            "the extended query protocol is not supported by the sqlmux admin console; use the simple query protocol (psql, or simple_query in drivers)".into(),
        )
        .into(),
    ))
}

#[async_trait]
impl ExtendedQueryHandler for RefuseExtended {
    type Statement = String;
    type QueryParser = NoopQueryParser;

    fn query_parser(&self) -> Arc<Self::QueryParser> {
        Arc::new(NoopQueryParser)
    }

    async fn on_parse<C>(&self, _client: &mut C, _message: Parse) -> PgWireResult<()>
    where
        C: WireClient + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        Err(extended_refused())
    }

    async fn do_query<C>(
        &self,
        _client: &mut C,
        _portal: &Portal<Self::Statement>,
        _max_rows: usize,
    ) -> PgWireResult<Response>
    where
        C: WireClient + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        Err(extended_refused())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_come_from_the_admin_lists() {
        let cfg = Config::parse("[admin]\nusers = [\"root\"]\nstats_users = [\"mon\"]\n").unwrap();
        assert_eq!(role_of(&cfg, "root"), Some(Role::Admin));
        assert_eq!(role_of(&cfg, "mon"), Some(Role::Stats));
        assert_eq!(role_of(&cfg, "app"), None);
    }
}
