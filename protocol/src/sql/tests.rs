//! Tests of the normal form, classification, effects and SET extraction,
//! plus property tests (idempotence, literal insensitivity, no panics).

use super::*;
use proptest::prelude::*;

const PG: Dialect = Dialect::Postgres;
const MY: Dialect = Dialect::MySql;

fn norm(sql: &str, d: Dialect) -> String {
    norm_bytes(sql.as_bytes(), d)
}

fn norm_bytes(sql: &[u8], d: Dialect) -> String {
    let mut n = Normalizer::new();
    n.normalize(sql, d);
    n.text().to_owned()
}

fn pg(sql: &str) -> String {
    norm(sql, PG)
}

fn my(sql: &str) -> String {
    norm(sql, MY)
}

fn analyze(sql: &str, d: Dialect) -> Analysis {
    Normalizer::new().normalize(sql.as_bytes(), d)
}

fn fx(sql: &str, d: Dialect) -> u32 {
    analyze(sql, d).effects.0
}

fn kind(sql: &str, d: Dialect) -> Kind {
    analyze(sql, d).kind
}

fn same(a: &str, b: &str, d: Dialect) {
    let (x, y) = (analyze(a, d), analyze(b, d));
    assert_eq!(norm(a, d), norm(b, d), "texts differ for {a:?} / {b:?}");
    assert_eq!(
        x.fingerprint, y.fingerprint,
        "fingerprints differ for {a:?} / {b:?}"
    );
}

fn set_cmds(sql: &str, d: Dialect) -> Vec<(String, Option<String>, bool)> {
    set_commands(sql.as_bytes(), d)
        .into_iter()
        .map(|c| (c.name, c.value, c.local))
        .collect()
}

fn cmd(name: &str, value: Option<&str>, local: bool) -> (String, Option<String>, bool) {
    (name.to_owned(), value.map(str::to_owned), local)
}

// ---------------------------------------------------------------- text form

#[test]
fn whitespace_runs_fold_and_punctuation_has_canonical_spacing() {
    assert_eq!(
        pg("select  a,b\n\tfrom t  where x=1"),
        "select a, b from t where x = $1"
    );
    same(
        "select a , b from t where x = 1",
        "SELECT a,b FROM t WHERE x=1",
        PG,
    );
    assert_eq!(
        pg("select t . a , f ( x ) , a [ 1 ] from s . t"),
        "select t.a, f(x), a[$1] from s.t"
    );
    assert_eq!(
        pg("select a :: text, b::int [ ]"),
        "select a::text, b::int[]"
    );
    assert_eq!(pg("select (a+b)*c"), "select (a + b) * c");
    assert_eq!(
        pg("select count ( * ) from t where x in(select 1)"),
        "select count(*) from t where x in (select $1)"
    );
}

#[test]
fn comments_are_dropped() {
    same("select 1 -- trailing\n from t", "select 1 from t", PG);
    same(
        "select /* a */ 1 /* b /* nested */ still comment */ from t",
        "select 1 from t",
        PG,
    );
    assert_eq!(my("select 1 # hash comment\nfrom t"), "select ? from t");
    assert_eq!(my("select 1 /* a */ from t"), "select ? from t");
    // MySQL comments do not nest: the first */ ends it.
    assert_eq!(my("select 1 /* a /* b */ from t"), "select ? from t");
    // In PostgreSQL `#` is an operator (bitwise xor).
    assert_eq!(pg("select 1 # 2"), "select $1 # $2");
    // MySQL `--` is a comment only when followed by white space.
    assert_eq!(my("select 5--3"), "select ? - ?");
    assert_eq!(my("select 5 -- 3"), "select ?");
}

#[test]
fn mysql_executable_comment_bodies_are_kept() {
    assert_eq!(my("/*!40101 SET NAMES utf8 */"), "set names utf8");
    assert_eq!(my("select /*+ BKA(t) */ 1"), "select ?");
}

#[test]
fn string_literals_of_every_form_become_placeholders() {
    assert_eq!(pg("select 'it''s'"), "select $1");
    assert_eq!(pg(r"select E'a\'b', e'x'"), "select $1, $2");
    assert_eq!(
        pg("select X'1F', x'00', B'0101', N'nat'"),
        "select $1, $2, $3, $4"
    );
    assert_eq!(pg(r"select U&'d\0061t\+000061'"), "select $1");
    assert_eq!(pg("select $$it's$$, $body$ x $$ y $body$"), "select $1, $2");
    assert_eq!(
        my(r"select 'it\'s', 'a''b', x'1F', b'01', N'n'"),
        "select ?, ?, ?, ?, ?"
    );
    // Adjacent string literals are one literal.
    same("select 'a'\n'b'", "select 'ab'", PG);
}

#[test]
fn mysql_double_quotes_are_strings_and_postgres_double_quotes_identifiers() {
    assert_eq!(my(r#"select "it\"s" from t"#), "select ? from t");
    assert_eq!(
        pg(r#"select "Col" from "My Table""#),
        r#"select "Col" from "My Table""#
    );
}

#[test]
fn numbers_become_placeholders() {
    assert_eq!(
        pg("select 1, 1.5, .5, 1e10, 1.5E-3, 0x1F, 0b101, 0o17, 1_000_000"),
        "select $1, $2, $3, $4, $5, $6, $7, $8, $9"
    );
    assert_eq!(my("select 42, 0x1F, 3.14"), "select ?, ?, ?");
    // Digits inside identifiers are not numbers.
    assert_eq!(pg("select t1.c2 from t1"), "select t1.c2 from t1");
}

#[test]
fn a_sign_before_a_number_is_part_of_the_literal_only_where_it_cannot_be_binary() {
    same(
        "select * from t where a = -5",
        "select * from t where a = 5",
        PG,
    );
    same(
        "select * from t where a=-5",
        "select * from t where a = 5",
        PG,
    );
    same("select -5", "select 5", PG);
    same("select f(-1, +2)", "select f(1, 2)", PG);
    same(
        "select case when a then -1 else +1 end",
        "select case when a then 1 else 1 end",
        PG,
    );
    assert_eq!(
        pg("select a - 5, a-5, a -5"),
        "select a - $1, a - $2, a - $3"
    );
    assert_eq!(pg("select 1 - 5"), "select $1 - $2");
    assert_eq!(pg("select -a"), "select - a");
    same(
        "select * from t where a = -5",
        "select * from t where a = 5",
        MY,
    );
    assert_eq!(my("select a-5"), "select a - ?");
}

#[test]
fn booleans_and_null_stay_keywords() {
    assert_eq!(
        pg("select TRUE, False, NULL where a is not null"),
        "select true, false, null where a is not null"
    );
}

#[test]
fn typed_literals_keep_their_type_word() {
    assert_eq!(
        pg("select interval '1 day', date '2020-01-01', timestamp with time zone '2020-01-01'"),
        "select interval $1, date $2, timestamp with time zone $3"
    );
    same("select date '2020-01-01'", "select date $1", PG);
}

#[test]
fn jsonb_question_mark_operators_are_not_placeholders_in_postgres() {
    assert_eq!(
        pg("select * from t where d ? 'k' and d ?| array['a'] and d ?& array['b']"),
        "select * from t where d ? $1 and d ?| array[$2 /*, ... */] and d ?& array[$3 /*, ... */]"
    );
    assert_eq!(
        my("select * from t where a = ? and b = ?"),
        "select * from t where a = ? and b = ?"
    );
}

#[test]
fn named_binds_become_placeholders() {
    assert_eq!(
        pg("select * from t where id = :id and name = :name"),
        "select * from t where id = $1 and name = $2"
    );
    assert_eq!(
        my("select * from t where id = :id"),
        "select * from t where id = ?"
    );
    // Not in array slices, not MySQL :=.
    assert_eq!(
        pg("select a[1:n], a[lo:hi]"),
        "select a[$1 : n], a[lo : hi]"
    );
    assert_eq!(my("select @x := 1"), "select @x := ?");
}

#[test]
fn casts_are_kept() {
    assert_eq!(
        pg("select '{1,2}'::int[], x::text, $1::uuid"),
        "select $1::int[], x::text, $2::uuid"
    );
}

#[test]
fn glued_tokens_do_not_merge_on_a_second_pass() {
    // `:` then `::` would read back as `::` then `:`.
    assert_eq!(pg("'' \"\": ::"), "$1 \"\" : ::");
    assert_eq!(pg("select a - .5, b.c"), "select a - $1, b.c");
}

#[test]
fn existing_bind_parameters_are_renumbered_in_order_of_appearance() {
    assert_eq!(
        pg("select * from t where b = $2 and a = $1"),
        "select * from t where b = $1 and a = $2"
    );
    assert_eq!(pg("select $1, $1"), "select $1, $2");
}

#[test]
fn simple_and_extended_protocol_give_the_same_fingerprint() {
    same(
        "select * from t where id = 5",
        "select * from t where id = $1",
        PG,
    );
    same(
        "SELECT * FROM users WHERE email = 'a@b.c' AND age > 30 LIMIT 1",
        "select * from users where email = $1 and age > $2 limit $3",
        PG,
    );
    same(
        "select * from t where id = 5",
        "select * from t where id = ?",
        MY,
    );
    same(
        "select * from t where id = :id",
        "select * from t where id = 5",
        PG,
    );
}

#[test]
fn in_lists_of_any_length_fold_to_one_entry() {
    let list = |n: usize| (1..=n).map(|i| i.to_string()).collect::<Vec<_>>().join(",");
    let params = (1..=100)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(",");
    let expected = "select * from t where id in ($1 /*, ... */) and x = $2";
    for sql in [
        "select * from t where id IN (1) and x = 7".to_owned(),
        "select * from t where id IN (1,2,3) and x = 7".to_owned(),
        format!("select * from t where id IN ({}) and x = 7", list(100)),
        format!("select * from t where id IN ({params}) and x = $101"),
        "select * from t where id in ('a', 'b') and x = 'y'".to_owned(),
    ] {
        assert_eq!(pg(&sql), expected, "{sql}");
    }
    assert_eq!(
        my("select * from t where id in (1, 2, 3) and x = 1"),
        "select * from t where id in (? /*, ... */) and x = ?"
    );
    same(
        "select * from t where id not in (1)",
        "select * from t where id not in (4, 5, 6, 7)",
        PG,
    );
    same(
        "select * from t where id in (?)",
        "select * from t where id in (?, ?, ?)",
        MY,
    );
    // Not only placeholders: kept as is.
    assert_eq!(
        pg("select * from t where id in (1, a)"),
        "select * from t where id in ($1, a)"
    );
    // A call's arguments are not a list.
    assert_eq!(
        pg("select f(1, 2), coalesce(a, 0)"),
        "select f($1, $2), coalesce(a, $3)"
    );
}

#[test]
fn arrays_of_placeholders_fold() {
    same(
        "select * from t where id = any(array[1,2,3])",
        "select * from t where id = ANY(ARRAY[7])",
        PG,
    );
    assert_eq!(
        pg("select * from t where id = any(array[1,2,3]) and x = 1"),
        "select * from t where id = any(array[$1 /*, ... */]) and x = $2"
    );
    same("select array[[1,2],[3,4]]", "select array[[1]]", PG);
    // Subscripts are not lists.
    assert_eq!(pg("select a[1], a[1][2]"), "select a[$1], a[$2][$3]");
}

#[test]
fn tuple_lists_fold() {
    same(
        "select * from t where (a, b) in ((1, 2), (3, 4), (5, 6))",
        "select * from t where (a, b) in ((1, 2))",
        PG,
    );
}

#[test]
fn multi_row_values_fold_to_one_row() {
    same(
        "insert into t (a, b) values (1, 'x')",
        "insert into t (a, b) values (1, 'x'), (2, 'y'), (3, 'z')",
        PG,
    );
    same(
        "insert into t (a, b) values (?, ?)",
        "insert into t (a, b) values (?, ?), (?, ?)",
        MY,
    );
    assert_eq!(
        pg("insert into t (a, b) values (1, 2), (3, 4) returning id, 5"),
        "insert into t(a, b) values ($1 /*, ... */) returning id, $2"
    );
    // Rows with expressions fold when they have the same shape.
    assert_eq!(
        pg("insert into t values (1, now()), (2, now()), (3, now())"),
        "insert into t values ($1, now())"
    );
    // Rows of different shapes are kept.
    assert_eq!(
        pg("insert into t values (1, now()), (2, default)"),
        "insert into t values ($1, now()), ($2, default)"
    );
    // Groups without placeholders are not deduplicated.
    assert_eq!(pg("select (a), (a) from t"), "select (a), (a) from t");
}

#[test]
fn unquoted_words_are_lower_cased_and_quoted_identifiers_kept() {
    assert_eq!(
        pg(r#"SELECT Name, "CamelCase" FROM Users"#),
        r#"select name, "CamelCase" from users"#
    );
    assert_eq!(
        my("SELECT `Name`, Other FROM `Users`"),
        "select `Name`, other from `Users`"
    );
    assert_eq!(
        pg(r#"select U&"d\0061t" from t"#),
        r#"select u&"d\0061t" from t"#
    );
}

#[test]
fn trailing_semicolons_drop_and_statements_keep_a_separator() {
    assert_eq!(pg("select 1;  \n"), "select $1");
    assert_eq!(pg("select 1;;; select 2 ;"), "select $1; select $2");
    same("select 1; select 2", "select 1 ; select 2;", PG);
    assert_eq!(analyze("select 1;;; select 2 ;", PG).statements, 2);
    assert_eq!(analyze("  ; -- nothing\n ;", PG).statements, 0);
    assert_eq!(analyze("", PG).statements, 0);
    assert_eq!(pg(" -- only a comment"), "");
    // A `;` inside parentheses does not split.
    assert_eq!(analyze("select (1; select 2", PG).statements, 1);
}

#[test]
fn fingerprint_is_xxh3_of_the_text_and_displays_as_16_hex_digits() {
    let mut n = Normalizer::new();
    let a = n.normalize(b"SELECT 1", PG);
    assert_eq!(
        a.fingerprint.0,
        xxhash_rust::xxh3::xxh3_64(n.text().as_bytes())
    );
    assert_eq!(Fingerprint(0xab).to_string(), "00000000000000ab");
    let s = a.fingerprint.to_string();
    assert_eq!(s.len(), 16);
    assert!(
        s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    );
}

#[test]
fn normalizer_reuse_gives_the_same_result_as_a_fresh_one() {
    let mut n = Normalizer::new();
    n.normalize(
        b"select 1, 2, 3 from a_much_longer_table_name where x in (1,2,3)",
        PG,
    );
    let a = n.normalize(b"select 1", PG);
    assert_eq!(n.text(), "select $1");
    assert_eq!(a, analyze("select 1", PG));
}

#[test]
fn input_beyond_64_kib_is_ignored_and_text_is_capped_on_a_char_boundary() {
    let mut long = String::from("select ");
    while long.len() < MAX_INPUT {
        long.push_str("a, ");
    }
    let cut_after = format!("{long} then, something, else");
    let (x, y) = (analyze(&long, PG), analyze(&cut_after, PG));
    assert_eq!(x.fingerprint, y.fingerprint);

    let mut n = Normalizer::new();
    let wide = format!("select {}", "\"é\", ".repeat(2000));
    n.normalize(wide.as_bytes(), PG);
    assert!(n.text().len() <= MAX_TEXT && n.text().len() > MAX_TEXT - 4);
    // The fingerprint covers the full text: a difference after the cut shows.
    let a = n.normalize(format!("{wide} x").as_bytes(), PG);
    let b = n.normalize(format!("{wide} y").as_bytes(), PG);
    assert_ne!(a.fingerprint, b.fingerprint);
}

#[test]
fn pathological_input_finishes_without_panicking() {
    let cases: Vec<Vec<u8>> = vec![
        b"select 'unterminated".to_vec(),
        b"select \"unterminated".to_vec(),
        b"select E'\\".to_vec(),
        b"select 1 /* unterminated".to_vec(),
        b"select $tag$ unterminated".to_vec(),
        b"select $".to_vec(),
        b"select $ 1, $$".to_vec(),
        b"select \xff\xfe, '\xff', \"\xc3\" from \xe2\x82".to_vec(),
        b"select \0 1\0".to_vec(),
        vec![b'('; 64 * 1024],
        vec![b')'; 64 * 1024],
        b"(1,".repeat(30_000),
        b"[".repeat(70_000),
        format!("select '{}", "x".repeat(100_000)).into_bytes(),
        b"$a$".repeat(10_000),
        b"$aaaaaaa$ $aaaaaa".repeat(5_000),
        b"/*".repeat(40_000),
        b"-".repeat(70_000),
        b"--".to_vec(),
        b"/".to_vec(),
        b"e".to_vec(),
        b"e'".to_vec(),
        b"u&".to_vec(),
        b":".to_vec(),
        b"0x".to_vec(),
        b"1e".to_vec(),
        b"@".to_vec(),
        b"@@".to_vec(),
    ];
    for case in cases {
        for d in [PG, MY] {
            let mut n = Normalizer::new();
            n.normalize(&case, d);
            assert!(n.text().len() <= MAX_TEXT);
            let _ = set_commands(&case, d);
        }
    }
    assert_eq!(pg("select 'unterminated"), "select $1");
    assert_eq!(pg("select 1 /* open"), "select $1");
    assert_eq!(pg("select \u{0}1"), "select $1");
    assert_eq!(norm_bytes(b"select \xff", PG), "select \u{FFFD}");
}

// ------------------------------------------------------------------- kinds

#[test]
fn statement_kinds() {
    let cases = [
        ("select 1", Kind::Select),
        ("  (select 1) union (select 2)", Kind::Select),
        ("with x as (select 1) select * from x", Kind::Select),
        ("values (1)", Kind::Select),
        ("table t", Kind::Select),
        ("insert into t values (1)", Kind::Insert),
        (
            "with x as (select 1) insert into t select * from x",
            Kind::Insert,
        ),
        (
            "with x as (delete from t returning *) select * from x",
            Kind::Select,
        ),
        (
            "with recursive x as (select 1) update t set a = 1",
            Kind::Update,
        ),
        ("update t set a = 1", Kind::Update),
        ("delete from t", Kind::Delete),
        ("begin", Kind::Begin),
        ("BEGIN ISOLATION LEVEL SERIALIZABLE", Kind::Begin),
        ("start transaction", Kind::Begin),
        ("commit", Kind::Commit),
        ("end", Kind::Commit),
        ("rollback", Kind::Rollback),
        ("abort", Kind::Rollback),
        ("rollback to savepoint a", Kind::Other),
        ("rollback to a", Kind::Other),
        ("rollback work to a", Kind::Other),
        ("set x = 1", Kind::Set),
        ("reset x", Kind::Set),
        ("show search_path", Kind::Show),
        ("create table t (a int)", Kind::Other),
        ("explain select 1", Kind::Other),
        ("", Kind::Other),
        ("-- nothing", Kind::Other),
        ("select 1; insert into t values (1)", Kind::Select),
    ];
    for (sql, k) in cases {
        assert_eq!(kind(sql, PG), k, "{sql}");
    }
    assert_eq!(kind("replace into t values (1)", MY), Kind::Insert);
    assert_eq!(kind("start transaction read only", MY), Kind::Begin);
    assert_eq!(kind("reset query cache", MY), Kind::Other);
}

// ----------------------------------------------------------------- effects

fn has(sql: &str, d: Dialect, bit: u32) -> bool {
    Effects(fx(sql, d)).has(bit)
}

#[test]
fn effect_txn_control() {
    for sql in [
        "begin",
        "start transaction",
        "commit",
        "end",
        "rollback",
        "abort",
        "savepoint a",
        "release a",
        "release savepoint a",
        "rollback to savepoint a",
        "prepare transaction 'x'",
        "commit prepared 'x'",
        "rollback prepared 'x'",
    ] {
        assert!(has(sql, PG, Effects::TXN_CONTROL), "{sql}");
    }
    assert_eq!(kind("commit prepared 'x'", PG), Kind::Other);
    assert!(has("xa start 'x'", MY, Effects::TXN_CONTROL));
    for sql in [
        "select 1",
        "select 'begin'",
        "insert into begin values (1)",
        "start replica",
    ] {
        assert!(!has(sql, PG, Effects::TXN_CONTROL), "{sql}");
    }
}

#[test]
fn effect_set() {
    for sql in [
        "set x = 1",
        "SET x TO 1",
        "set session x = 1",
        "set time zone 'UTC'",
        "set search_path to a, b",
        "set role admin",
        "set session authorization bob",
        "set schema 'x'",
        "set names 'utf8'",
        "set \"MyApp.x\" = 1",
        "set session characteristics as transaction isolation level serializable",
    ] {
        assert_eq!(fx(sql, PG), Effects::SET, "{sql}");
    }
    for sql in [
        "set local x = 1",
        "set transaction isolation level serializable",
        "set constraints all deferred",
        "set session transaction read only",
        "select 'set x = 1'",
    ] {
        assert!(!has(sql, PG, Effects::SET), "{sql}");
    }
    for sql in [
        "set names utf8mb4",
        "SET NAMES utf8mb4 COLLATE utf8mb4_bin",
        "set @a = 1",
        "set @a := 1",
        "set session sql_mode = ''",
        "set local sql_mode = ''",
        "set autocommit=0",
        "set @@session.x = 1",
        "set @@x = 1",
        "set character set utf8",
        "set charset utf8",
        "set session transaction isolation level read committed",
        "set global x = 1, @y = 2",
    ] {
        assert_eq!(fx(sql, MY), Effects::SET, "{sql}");
    }
    for sql in [
        "set global x = 1",
        "set @@global.x = 1",
        "set persist x = 1",
        "set transaction read only",
        "set global transaction read only",
        "set password = 'x'",
        "set default role all to u",
    ] {
        assert_eq!(fx(sql, MY), 0, "{sql}");
    }
}

#[test]
fn effect_set_local() {
    assert_eq!(fx("set local x = 1", PG), Effects::SET_LOCAL);
    assert_eq!(fx("SET LOCAL TIME ZONE 'UTC'", PG), Effects::SET_LOCAL);
    assert_eq!(fx("set x = 1", PG) & Effects::SET_LOCAL, 0);
    // MySQL LOCAL means SESSION.
    assert_eq!(fx("set local x = 1", MY), Effects::SET);
}

#[test]
fn effect_reset() {
    assert_eq!(fx("reset x", PG), Effects::RESET);
    assert_eq!(fx("reset time zone", PG), Effects::RESET);
    assert_eq!(fx("RESET ALL", PG), Effects::RESET_ALL);
    assert_eq!(fx("reset query cache", MY), 0);
}

#[test]
fn effect_discard() {
    assert_eq!(fx("discard all", PG), Effects::DISCARD_ALL);
    assert_eq!(fx("DISCARD TEMP", PG), Effects::DISCARD_TEMP);
    assert_eq!(fx("discard temporary", PG), Effects::DISCARD_TEMP);
    assert_eq!(fx("discard plans", PG), 0);
    assert_eq!(fx("discard sequences", PG), 0);
}

#[test]
fn effect_listen_unlisten() {
    assert_eq!(fx("listen ch", PG), Effects::LISTEN);
    assert_eq!(fx("unlisten *", PG), Effects::UNLISTEN_ALL);
    assert_eq!(fx("unlisten ch", PG), Effects::UNLISTEN);
    assert_eq!(fx("select 'listen ch'", PG), 0);
    assert_eq!(fx("notify ch", PG), 0);
}

#[test]
fn effect_advisory_locks() {
    for sql in [
        "select pg_advisory_lock(1)",
        "SELECT PG_ADVISORY_LOCK(1)",
        "select pg_advisory_lock_shared(1, 2)",
        "select pg_try_advisory_lock(1)",
        "select pg_try_advisory_lock_shared(1)",
        "select pg_catalog.pg_advisory_lock(1)",
        "select x from t where pg_try_advisory_lock(t.id)",
    ] {
        assert_eq!(fx(sql, PG), Effects::ADVISORY_LOCK, "{sql}");
    }
    for sql in [
        "select pg_advisory_xact_lock(1)",
        "select pg_try_advisory_xact_lock(1)",
        "select pg_advisory_xact_lock_shared(1)",
        "select pg_advisory_unlock(1)",
        "select 'pg_advisory_lock(1)'",
        "select pg_advisory_lock from t",
    ] {
        assert_eq!(fx(sql, PG), 0, "{sql}");
    }
    assert_eq!(
        fx("select pg_advisory_unlock_all()", PG),
        Effects::ADVISORY_UNLOCK_ALL
    );
    assert_eq!(fx("select get_lock('x', 10)", MY), Effects::ADVISORY_LOCK);
    assert_eq!(
        fx("do release_all_locks()", MY),
        Effects::ADVISORY_UNLOCK_ALL
    );
}

#[test]
fn effect_prepare_and_deallocate() {
    assert_eq!(fx("prepare p as select 1", PG), Effects::PREPARE);
    assert_eq!(fx("prepare p (int) as select $1", PG), Effects::PREPARE);
    assert_eq!(fx("prepare transaction 'x'", PG), Effects::TXN_CONTROL);
    assert_eq!(fx("deallocate p", PG), Effects::DEALLOCATE);
    assert_eq!(fx("deallocate prepare p", PG), Effects::DEALLOCATE);
    assert_eq!(fx("deallocate all", PG), Effects::DEALLOCATE_ALL);
    assert_eq!(fx("DEALLOCATE PREPARE ALL", PG), Effects::DEALLOCATE_ALL);
    assert_eq!(fx("deallocate \"all\"", PG), Effects::DEALLOCATE);
    assert_eq!(fx("prepare s from 'select 1'", MY), Effects::PREPARE);
    assert_eq!(fx("deallocate prepare s", MY), Effects::DEALLOCATE);
    assert_eq!(fx("drop prepare s", MY), Effects::DEALLOCATE);
    assert_eq!(fx("execute p", PG), 0);
}

#[test]
fn effect_temp_table() {
    for sql in [
        "create temp table t (a int)",
        "CREATE TEMPORARY TABLE t (a int)",
        "create global temporary table t (a int)",
        "create local temp table t (a int)",
        "create temp table t as select 1",
        "create temp view v as select 1",
        "create or replace temp view v as select 1",
        "create temp sequence s",
        "create temp table t (a int) on commit delete rows",
        "create temp table t (a int) on commit preserve rows",
        "select * into temp t from x",
        "select * into temporary table t from x",
    ] {
        assert_eq!(fx(sql, PG), Effects::TEMP_TABLE, "{sql}");
    }
    for sql in [
        "create temp table t (a int) on commit drop",
        "CREATE TEMP TABLE t (a int) ON COMMIT DROP",
        "create table temp (a int)",
        "create table t (a int)",
        "select * into t from x",
        "create unlogged table t (a int)",
        "select * from temp",
    ] {
        assert_eq!(fx(sql, PG), 0, "{sql}");
    }
    assert_eq!(
        fx("create temporary table t (a int)", MY),
        Effects::TEMP_TABLE
    );
}

#[test]
fn effect_with_hold() {
    assert_eq!(
        fx("declare c cursor with hold for select 1", PG),
        Effects::WITH_HOLD
    );
    assert_eq!(
        fx("DECLARE c NO SCROLL CURSOR WITH HOLD FOR SELECT 1", PG),
        Effects::WITH_HOLD
    );
    assert_eq!(fx("declare c cursor without hold for select 1", PG), 0);
    assert_eq!(fx("declare c cursor for select 1", PG), 0);
    assert_eq!(
        fx(
            "declare c cursor for with hold as (select 1) select * from hold",
            PG
        ),
        0
    );
}

#[test]
fn effect_load() {
    assert_eq!(fx("load 'auto_explain'", PG), Effects::LOAD);
    assert_eq!(fx("load data infile 'x' into table t", MY), 0);
}

#[test]
fn effects_accumulate_over_statements() {
    let a = analyze(
        "begin; set x = 1; select pg_advisory_lock(1); listen c; commit",
        PG,
    );
    assert_eq!(a.statements, 5);
    assert_eq!(a.kind, Kind::Begin);
    assert!(
        a.effects
            .has(Effects::TXN_CONTROL | Effects::SET | Effects::ADVISORY_LOCK | Effects::LISTEN)
    );
    assert!(!a.effects.any(Effects::SET_LOCAL | Effects::TEMP_TABLE));
}

// ------------------------------------------------------------ set_commands

#[test]
fn set_commands_postgres() {
    assert_eq!(
        set_cmds("SET search_path TO myschema, public", PG),
        vec![cmd("search_path", Some("myschema, public"), false)]
    );
    assert_eq!(
        set_cmds("set Statement_Timeout = 5000", PG),
        vec![cmd("statement_timeout", Some("5000"), false)]
    );
    assert_eq!(
        set_cmds("set x to default", PG),
        vec![cmd("x", None, false)]
    );
    assert_eq!(set_cmds("set x = DEFAULT", PG), vec![cmd("x", None, false)]);
    assert_eq!(set_cmds("RESET x", PG), vec![cmd("x", None, false)]);
    assert_eq!(set_cmds("reset all", PG), vec![]);
    assert_eq!(
        set_cmds("SET TIME ZONE 'UTC'", PG),
        vec![cmd("timezone", Some("'UTC'"), false)]
    );
    assert_eq!(
        set_cmds("set time zone local", PG),
        vec![cmd("timezone", None, false)]
    );
    assert_eq!(
        set_cmds("reset time zone", PG),
        vec![cmd("timezone", None, false)]
    );
    assert_eq!(
        set_cmds("SET SESSION x = 1", PG),
        vec![cmd("x", Some("1"), false)]
    );
    assert_eq!(
        set_cmds("SET LOCAL x = 1", PG),
        vec![cmd("x", Some("1"), true)]
    );
    assert_eq!(
        set_cmds("set local time zone 'UTC'", PG),
        vec![cmd("timezone", Some("'UTC'"), true)]
    );
    assert_eq!(
        set_cmds("SET \"MyApp\".user_id = '42'", PG),
        vec![cmd("MyApp.user_id", Some("'42'"), false)]
    );
    assert_eq!(
        set_cmds("set myapp.user_id = -42", PG),
        vec![cmd("myapp.user_id", Some("-42"), false)]
    );
    assert_eq!(
        set_cmds("set application_name = '  it''s; ok  '  ;", PG),
        vec![cmd("application_name", Some("'  it''s; ok  '"), false)]
    );
    assert_eq!(
        set_cmds("set role admin", PG),
        vec![cmd("role", Some("admin"), false)]
    );
    assert_eq!(
        set_cmds("set role none", PG),
        vec![cmd("role", None, false)]
    );
    assert_eq!(
        set_cmds("set session authorization default", PG),
        vec![cmd("session_authorization", None, false)]
    );
    assert_eq!(
        set_cmds("set schema 'app'", PG),
        vec![cmd("search_path", Some("'app'"), false)]
    );
    assert_eq!(
        set_cmds("set names 'UTF8'", PG),
        vec![cmd("client_encoding", Some("'UTF8'"), false)]
    );
    assert_eq!(
        set_cmds("set transaction isolation level serializable", PG),
        vec![]
    );
    assert_eq!(set_cmds("set constraints all deferred", PG), vec![]);
    assert_eq!(
        set_cmds(
            "SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL READ COMMITTED, READ ONLY, NOT DEFERRABLE",
            PG
        ),
        vec![
            cmd(
                "default_transaction_isolation",
                Some("'read committed'"),
                false
            ),
            cmd("default_transaction_read_only", Some("on"), false),
            cmd("default_transaction_deferrable", Some("off"), false),
        ]
    );
    assert_eq!(
        set_cmds(
            "select 1; SET a = 1; begin; set local b to 'x'; reset c; /* set d = 1 */ select 'set e = 1'",
            PG
        ),
        vec![
            cmd("a", Some("1"), false),
            cmd("b", Some("'x'"), true),
            cmd("c", None, false)
        ]
    );
    // Malformed: nothing.
    assert_eq!(set_cmds("set", PG), vec![]);
    assert_eq!(set_cmds("set x", PG), vec![]);
    assert_eq!(set_cmds("set x =", PG), vec![]);
}

#[test]
fn set_commands_mysql() {
    assert_eq!(
        set_cmds("SET NAMES utf8mb4 COLLATE utf8mb4_bin", MY),
        vec![cmd("names", Some("utf8mb4 COLLATE utf8mb4_bin"), false)]
    );
    assert_eq!(
        set_cmds("set character set utf8", MY),
        vec![cmd("character set", Some("utf8"), false)]
    );
    assert_eq!(
        set_cmds("SET autocommit=0", MY),
        vec![cmd("autocommit", Some("0"), false)]
    );
    assert_eq!(
        set_cmds(
            "SET @A = 1, @@session.sql_mode = 'a,b', GLOBAL g = 2, SESSION z = (select 1, 2), @@w := 4, @@global.v = 5, LOCAL l = DEFAULT",
            MY
        ),
        vec![
            cmd("@a", Some("1"), false),
            cmd("sql_mode", Some("'a,b'"), false),
            cmd("z", Some("(select 1, 2)"), false),
            cmd("w", Some("4"), false),
            cmd("l", None, false),
        ]
    );
    assert_eq!(
        set_cmds("set `My Var` = 1", MY),
        vec![cmd("My Var", Some("1"), false)]
    );
    assert_eq!(
        set_cmds(
            "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED, READ ONLY",
            MY
        ),
        vec![
            cmd("transaction_isolation", Some("'READ-COMMITTED'"), false),
            cmd("transaction_read_only", Some("ON"), false)
        ]
    );
    assert_eq!(
        set_cmds("set transaction isolation level serializable", MY),
        vec![]
    );
    assert_eq!(set_cmds("set global max_connections = 10", MY), vec![]);
    assert_eq!(set_cmds("set password = 'x'", MY), vec![]);
    assert_eq!(
        set_cmds("/*!40101 SET NAMES utf8 */;", MY),
        vec![cmd("names", Some("utf8"), false)]
    );
}

#[test]
fn set_command_to_sql_replays_the_change() {
    let c = |name: &str, value: Option<&str>, local: bool| SetCommand {
        name: name.to_owned(),
        value: value.map(str::to_owned),
        local,
    };
    assert_eq!(
        c("search_path", Some("a, b"), false).to_sql(PG),
        "SET search_path TO a, b"
    );
    assert_eq!(c("x", None, false).to_sql(PG), "RESET x");
    assert_eq!(c("x", None, true).to_sql(PG), "SET LOCAL x TO DEFAULT");
    assert_eq!(
        c("MyApp.user", Some("'1'"), false).to_sql(PG),
        "SET \"MyApp.user\" TO '1'"
    );
    assert_eq!(c("role", Some("admin"), false).to_sql(PG), "SET ROLE admin");
    assert_eq!(c("role", None, false).to_sql(PG), "RESET ROLE");
    assert_eq!(
        c("session_authorization", None, false).to_sql(PG),
        "RESET SESSION AUTHORIZATION"
    );
    assert_eq!(
        c("names", Some("utf8mb4"), false).to_sql(MY),
        "SET NAMES utf8mb4"
    );
    assert_eq!(
        c("character set", None, false).to_sql(MY),
        "SET CHARACTER SET DEFAULT"
    );
    assert_eq!(c("@a", Some("1"), false).to_sql(MY), "SET @a = 1");
    assert_eq!(
        c("sql_mode", None, false).to_sql(MY),
        "SET SESSION sql_mode = DEFAULT"
    );
    assert_eq!(
        c("My Var", Some("1"), false).to_sql(MY),
        "SET SESSION `My Var` = 1"
    );
    assert_eq!(
        c("transaction_isolation", Some("'READ-COMMITTED'"), false).to_sql(MY),
        "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED"
    );
    assert_eq!(
        c("transaction_read_only", Some("ON"), false).to_sql(MY),
        "SET SESSION TRANSACTION READ ONLY"
    );
    // Round trip: what to_sql writes parses back to the same command.
    for sql in [
        "SET search_path TO a, b",
        "SET LOCAL x TO 5",
        "RESET x",
        "SET \"A.b\" TO 1",
        "SET ROLE admin",
    ] {
        let cmds = set_commands(sql.as_bytes(), PG);
        assert_eq!(cmds.len(), 1, "{sql}");
        assert_eq!(cmds[0].to_sql(PG), sql);
    }
}

// ------------------------------------------------------------- properties

/// Token soup that looks like SQL, including the tricky parts.
fn sqlish(mysql: bool) -> impl Strategy<Value = String> {
    let mut toks = vec![
        "select", "FROM", "where", "in", "values", "and", "t", "Users", "a.b", "count", "array",
        "any", "insert", "into", "set", "x", "1", "-5", "+2", "3.5e2", "0x1F", "'s'", "'it''s'",
        "$$d$$", "e'\\n'", "(", ")", "[", "]", ",", ";", "=", "<>", "-", "+", "*", "::", ".",
        ":name", "/* c */", "-- c\n", "\"Q\"", "null", "TRUE", "interval", "'1 day'", "$1", "$7",
        "?", "?|", "with", "hold", "default", "@", "$", "\\", "{",
    ];
    if mysql {
        toks.extend([
            "`B`",
            "\"dq\"",
            "# c\n",
            "@v",
            "@@session.x",
            ":=",
            "'a\\'b'",
        ]);
    }
    let sep = prop_oneof![Just(""), Just(" "), Just("  "), Just("\n"), Just("\t")];
    proptest::collection::vec((proptest::sample::select(toks), sep), 0..40)
        .prop_map(|v| v.into_iter().flat_map(|(t, s)| [t, s]).collect::<String>())
}

proptest! {
    #[test]
    fn normalizing_twice_changes_nothing(sql in sqlish(false)) {
        let mut n = Normalizer::new();
        let a = n.normalize(sql.as_bytes(), PG);
        let text = n.text().to_owned();
        let b = n.normalize(text.as_bytes(), PG);
        prop_assert_eq!(n.text(), text.as_str(), "input {:?}", sql);
        prop_assert_eq!(a.fingerprint, b.fingerprint);
        prop_assert_eq!(a.statements, b.statements);
    }

    #[test]
    fn normalizing_twice_changes_nothing_mysql(sql in sqlish(true)) {
        let mut n = Normalizer::new();
        let a = n.normalize(sql.as_bytes(), MY);
        let text = n.text().to_owned();
        let b = n.normalize(text.as_bytes(), MY);
        prop_assert_eq!(n.text(), text.as_str(), "input {:?}", sql);
        prop_assert_eq!(a.fingerprint, b.fingerprint);
    }

    #[test]
    fn literal_values_do_not_change_the_fingerprint(
        id in any::<i64>(),
        name in "[^\\x00]{0,20}",
        list in proptest::collection::vec(any::<i32>(), 1..50),
        rows in proptest::collection::vec((any::<u16>(), "[a-z' ]{0,8}"), 1..20),
        limit in 0u32..10_000,
        price in any::<f32>().prop_filter("finite", |f| f.is_finite()),
    ) {
        let template = "select * from t where id = 1 and name = 'x' and k in (1) and p > 1.5 limit 1; \
                        insert into u (a, b) values (1, 'y')";
        for d in [PG, MY] {
            // MySQL strings have backslash escapes, PostgreSQL standard strings not.
            let quote = |s: &str| {
                let s = if d == MY { s.replace('\\', "\\\\") } else { s.to_owned() };
                format!("'{}'", s.replace('\'', "''"))
            };
            let list = list.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(", ");
            let rows = rows.iter().map(|(a, b)| format!("({a}, {})", quote(b))).collect::<Vec<_>>().join(",");
            let sql = format!(
                "SELECT * FROM t WHERE id = {id} AND name = {} AND k IN ({list}) AND p > {price} LIMIT {limit}; \
                 INSERT INTO u (a, b) VALUES {rows}",
                quote(&name)
            );
            prop_assert_eq!(analyze(&sql, d).fingerprint, analyze(template, d).fingerprint, "{}", sql);
        }
    }

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        for d in [PG, MY] {
            let mut n = Normalizer::new();
            n.normalize(&bytes, d);
            prop_assert!(n.text().len() <= MAX_TEXT);
            let text = n.text().to_owned();
            n.normalize(text.as_bytes(), d);
            if text.len() < MAX_TEXT / 2 {
                prop_assert_eq!(n.text(), text.as_str());
            }
            let _ = set_commands(&bytes, d);
        }
    }

    #[test]
    fn sql_punctuation_soup_never_panics(
        bytes in proptest::collection::vec(proptest::sample::select(b"'\"`$()[],;-+/*#?:.@\\ e0xX&u\n\xff".to_vec()), 0..300)
    ) {
        for d in [PG, MY] {
            let mut n = Normalizer::new();
            n.normalize(&bytes, d);
            let text = n.text().to_owned();
            let _ = set_commands(&bytes, d);
            // The text is itself valid input, already in normal form.
            n.normalize(text.as_bytes(), d);
            prop_assert_eq!(n.text(), text.as_str(), "input {:?}", String::from_utf8_lossy(&bytes));
        }
    }
}

/// `sql` with every run of ASCII digits replaced by another number (of
/// another length, too), chosen by `seed`.
fn renumber(sql: &str, seed: u64) -> String {
    let mut out = String::with_capacity(sql.len() + 8);
    let mut state = seed | 1;
    let mut in_run = false;
    for c in sql.chars() {
        if c.is_ascii_digit() {
            if !in_run {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                out.push_str(&(state % 100_000).to_string());
            }
            in_run = true;
        } else {
            in_run = false;
            out.push(c);
        }
    }
    out
}

fn shaped_soup(mysql: bool) -> impl Strategy<Value = String> {
    let glue = prop_oneof![
        sqlish(mysql),
        proptest::collection::vec(
            proptest::sample::select(vec![
                "1", "42", "t", "x", "é", "@", "$", ":", "_", ".", "e", "0x", "'", "\"", "`", "(",
                ")", ",", " ", "-", "--", "\n", "/*", "*/", "#", "$$", "in", "select", "@@", "?",
            ]),
            0..40,
        )
        .prop_map(|v| v.concat()),
    ];
    glue
}

proptest! {
    #[test]
    fn analyze_by_shape_gives_what_normalize_gives(
        sql in shaped_soup(false),
        mysql_sql in shaped_soup(true),
        seed in any::<u64>(),
    ) {
        for (d, sql) in [(PG, &sql), (MY, &mysql_sql)] {
            let mut cached = Normalizer::new();
            // Warm the memory with a statement of the same shape, if it
            // has one, then ask for the original.
            cached.analyze(renumber(sql, seed).as_bytes(), d);
            let a = cached.analyze(sql.as_bytes(), d);
            let mut plain = Normalizer::new();
            let b = plain.normalize(sql.as_bytes(), d);
            prop_assert_eq!(a, b, "input {:?}", sql);
            prop_assert_eq!(cached.text(), plain.text(), "input {:?}", sql);
        }
    }
}

#[test]
fn analyze_answers_numbers_from_memory_and_keeps_identifiers_apart() {
    let mut n = Normalizer::new();
    let a = n.analyze(b"SELECT abalance FROM pgbench_accounts WHERE aid = 17;", PG);
    let b = n.analyze(
        b"SELECT abalance FROM pgbench_accounts WHERE aid = 982301;",
        PG,
    );
    assert_eq!(a, b);
    assert_eq!(
        n.text(),
        "select abalance from pgbench_accounts where aid = $1"
    );
    // Digits that are part of names are not numbers.
    let t1 = n.analyze(b"select * from t1", PG);
    let t2 = n.analyze(b"select * from t2", PG);
    assert_ne!(t1.fingerprint, t2.fingerprint);
    n.analyze(b"select * from 1t", MY);
    let m2 = n.analyze(b"select * from 2t", MY);
    assert_eq!(m2, Normalizer::new().normalize(b"select * from 2t", MY));
    let v1 = n.analyze(b"select @1", MY);
    let v2 = n.analyze(b"select @2", MY);
    assert_ne!(v1.fingerprint, v2.fingerprint);
    let q1 = n.analyze(b"select \"1\" from t", PG);
    let q2 = n.analyze(b"select \"2\" from t", PG);
    assert_ne!(q1.fingerprint, q2.fingerprint);
}

#[test]
fn non_utf8_statements_get_a_utf8_text_that_fingerprints_to_itself() {
    // A LATIN1 client's identifier (é = 0xE9) and plain garbage.
    for sql in [
        &b"SELECT caf\xe9 FROM t WHERE id = 1"[..],
        b"\n\xac\xac\xff\xff select",
    ] {
        for d in [PG, MY] {
            let mut n = Normalizer::new();
            let a = n.normalize(sql, d);
            let text = n.text().to_owned();
            assert!(!text.is_empty(), "{sql:?}");
            assert!(text.contains('\u{fffd}'), "{text}");
            let b = n.normalize(text.as_bytes(), d);
            assert_eq!(n.text(), text);
            assert_eq!(a.fingerprint, b.fingerprint, "{text}");
        }
    }
}
