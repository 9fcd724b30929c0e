//! The benchmark matrix: which pgbench load runs against which targets.

use serde::Serialize;

/// A system a scenario runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    /// PostgreSQL itself, no proxy.
    Direct,
    /// The release sqlmux binary, insight on (the default).
    Sqlmux,
    /// PgBouncer, transaction mode.
    PgBouncer,
    /// A second sqlmux process with `[insight] enabled = false`.
    SqlmuxNoInsight,
}

impl Target {
    /// Name in the table.
    pub fn name(self) -> &'static str {
        match self {
            Target::Direct => "direct",
            Target::Sqlmux => "sqlmux",
            Target::PgBouncer => "pgbouncer",
            Target::SqlmuxNoInsight => "sqlmux-noinsight",
        }
    }
}

/// What a scenario measures (decides the target rows it feeds).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// `pgbench -S` with a query mode.
    Select,
    /// The default TPC-B-like script.
    Tpcb,
    /// `-C`: a new connection per transaction.
    Connect,
}

/// One row group of the table.
#[derive(Debug, Clone, Serialize)]
pub struct Scenario {
    /// Stable key, e.g. `select-simple-c16` (for `--only` and the JSON).
    pub key: String,
    /// Label in the table, e.g. `-S simple c=16`.
    pub label: String,
    /// What it measures.
    pub kind: Kind,
    /// Query mode (`simple`, `extended`, `prepared`).
    pub mode: &'static str,
    /// pgbench flags besides -c/-j/-T/-l.
    pub flags: Vec<&'static str>,
    /// Clients.
    pub clients: u32,
    /// pgbench threads.
    pub threads: u32,
    /// Targets, in the order they run within a round.
    pub targets: Vec<Target>,
}

impl Scenario {
    /// The same load with the proxies reaching the server over its Unix
    /// socket (`--server-unix`): key and label say so.
    pub fn server_unix(self) -> Scenario {
        Scenario {
            key: format!("{}-server-unix", self.key),
            label: format!("{} server-unix", self.label),
            ..self
        }
    }
}

fn threads_for(clients: u32) -> u32 {
    if clients == 1 { 1 } else { 2 }
}

/// The full matrix (issue 6).
pub fn all() -> Vec<Scenario> {
    let three = vec![Target::Direct, Target::Sqlmux, Target::PgBouncer];
    // From 16 clients on, sqlmux with insight off runs in the same round,
    // so every such row shows what insight costs.
    let four = vec![
        Target::Direct,
        Target::Sqlmux,
        Target::SqlmuxNoInsight,
        Target::PgBouncer,
    ];
    let mut v = Vec::new();
    for mode in ["simple", "extended", "prepared"] {
        for clients in [1, 16, 64, 256] {
            let targets = if clients >= 16 { &four } else { &three };
            v.push(Scenario {
                key: format!("select-{mode}-c{clients}"),
                label: format!("-S {mode} c={clients}"),
                kind: Kind::Select,
                mode,
                flags: vec!["-S", "-M", mode],
                clients,
                threads: threads_for(clients),
                targets: targets.clone(),
            });
        }
    }
    v.push(Scenario {
        key: "tpcb-simple-c16".into(),
        label: "TPC-B simple c=16".into(),
        kind: Kind::Tpcb,
        mode: "simple",
        flags: vec!["-M", "simple"],
        clients: 16,
        threads: 2,
        targets: three.clone(),
    });
    v.push(Scenario {
        key: "connect-simple-c16".into(),
        label: "-S -C simple c=16".into(),
        kind: Kind::Connect,
        mode: "simple",
        flags: vec!["-S", "-C", "-M", "simple"],
        clients: 16,
        threads: 2,
        targets: three,
    });
    v
}
