//! `PgSink` against a real PostgreSQL. Taking a batch's keys as new (no state read,
//! `FreshGuess`): a known key among new ones still merges against its state, also in a later
//! slice, and a new row PostgreSQL refuses keeps no state; each with COPY and with INSERT
//! statements, and every supported type copied as the statements write it. A merged row whose
//! value no longer fits its column is parked, not counted, and its state kept. States stored
//! under an older key form are converted when a sink starts, both ways.

use meshsync_core::{
    BatchReport, Cell, ChangeBatch, Hlc, Op, PeerId, RowChange, SchemaVersion, SourcePosition,
    TableName, TxnId, Value,
};
use meshsync_merge::PolicySet;
use meshsync_pg::{
    apply::PgSink,
    catalog,
    setup::{self, Names},
};
use meshsync_testkit::{ALL_TYPES_DDL, Postgres};
use sqlx::PgConnection;

/// Table `public.t`, with a CHECK only the database knows of.
pub(crate) const T: &str =
    "CREATE TABLE public.t (id int8 PRIMARY KEY, a text, n int8 NOT NULL CHECK (n < 100))";

pub(crate) fn peer(p: &str) -> PeerId {
    PeerId::new(p).unwrap()
}

/// Inserts of `(id, a, n)` into `public.t` by `origin`, stamped `secs` after a day.
pub(crate) fn insert(origin: &str, secs: u64, rows: &[(i64, &str, i64)]) -> ChangeBatch {
    let rows = rows
        .iter()
        .enumerate()
        .map(|(i, (id, a, n))| RowChange {
            index: i as u32,
            op: Op::Insert,
            key: vec![Value::Int(*id)],
            cells: vec![
                Cell::Value(Value::Int(*id)),
                Cell::Value(Value::Text((*a).to_owned())),
                Cell::Value(Value::Int(*n)),
            ],
            deltas: Vec::new(),
        })
        .collect();
    ChangeBatch {
        origin: peer(origin),
        database: "postgres".into(),
        table: TableName::new("public", "t"),
        hlc: Hlc {
            time: (86_400 + secs) << 32,
            node: 1,
        },
        position: SourcePosition(secs.to_string()),
        txn: TxnId(secs.to_string()),
        chunk: 0,
        schema: SchemaVersion(1),
        key_columns: vec!["id".into()],
        columns: vec!["id".into(), "a".into(), "n".into()],
        rows,
    }
}

/// A server with table `public.t` and the meshsync schema, a connection and a sink writing
/// keys taken as new with COPY or with INSERT statements.
async fn prepared(copy: bool) -> (Postgres, PgConnection, PgSink) {
    let pg = Postgres::start().await.unwrap();
    let mut c = pg.connect("postgres").await.unwrap();
    sqlx::raw_sql(T).execute(&mut c).await.unwrap();
    let mut sink = sink(&pg, &mut c).await;
    assert!(sink.copies(), "the sink sets TCP_NODELAY and copies");
    sink.set_copy(copy);
    (pg, c, sink)
}

/// Each case with COPY and with INSERT statements; with COPY on a multi-threaded runtime,
/// where a batch's slices are decided on a second thread.
macro_rules! both_ways {
    ($($name:ident),*) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn with_copy() {
                super::$name(true).await
            }
            #[tokio::test]
            async fn with_insert() {
                super::$name(false).await
            }
        }
    )*};
}

both_ways!(
    a_known_key_among_new_ones_merges_against_its_state,
    a_new_row_postgres_refuses_keeps_no_state,
    a_known_key_in_a_later_chunk_undoes_the_chunks_before_it,
    a_row_here_without_a_state_is_merged_not_doubled
);

/// A sink for `public.t` (its catalog read now).
async fn sink(pg: &Postgres, c: &mut PgConnection) -> PgSink {
    sink_of(pg, c, "t").await
}

/// A sink for table `public.<table>`.
async fn sink_of(pg: &Postgres, c: &mut PgConnection, table: &str) -> PgSink {
    try_sink_of(pg, c, &[table]).await.unwrap()
}

/// A sink for tables `public.<table>`, or why it would not start.
pub(crate) async fn try_sink_of(
    pg: &Postgres,
    c: &mut PgConnection,
    tables: &[&str],
) -> Result<PgSink, meshsync_pg::PgError> {
    let names = Names::for_peer(&peer("me"));
    let tables: Vec<TableName> = tables
        .iter()
        .map(|t| TableName::new("public", *t))
        .collect();
    setup::prepare(c, &names, &tables).await.unwrap();
    let infos = catalog::load(c, &tables).await.unwrap();
    PgSink::connect(
        &pg.url("postgres"),
        &names,
        infos,
        PolicySet::default(),
        peer("me"),
        "apply_me".into(),
    )
    .await
}

/// Applies `batch` in one committed transaction; (applied, superseded, parked).
pub(crate) async fn apply(
    sink: &mut PgSink,
    batch: &ChangeBatch,
    upto: u64,
) -> (usize, usize, Vec<String>) {
    let mut txn = sink.begin().await.unwrap();
    let reports: Vec<BatchReport> = txn.apply(&[batch]).await.unwrap();
    txn.commit(upto).await.unwrap();
    counts(&reports[0])
}

/// (applied, superseded, parked reasons) of a report.
pub(crate) fn counts(r: &BatchReport) -> (usize, usize, Vec<String>) {
    let parked = r.parked.iter().map(|p| p.reason.clone()).collect();
    (r.applied, r.superseded, parked)
}

pub(crate) async fn rows(c: &mut PgConnection) -> Vec<(i64, String, i64)> {
    sqlx::query_as("SELECT id, a::text, n FROM public.t ORDER BY id")
        .fetch_all(c)
        .await
        .unwrap()
}

pub(crate) async fn states(c: &mut PgConnection) -> i64 {
    let (n,): (i64,) = sqlx::query_as("SELECT count(*) FROM meshsync.row_state")
        .fetch_one(c)
        .await
        .unwrap();
    n
}

async fn a_known_key_among_new_ones_merges_against_its_state(copy: bool) {
    let (_pg, mut c, mut s) = prepared(copy).await;
    // All new: taken as new, and right.
    let first = insert("x", 200, &[(1, "newer", 1)]);
    assert_eq!(apply(&mut s, &first, 1).await, (1, 0, vec![]));
    assert_eq!(s.copied_rows(), u64::from(copy));
    // Key 1 is known now, with a newer write: taking this batch as new must be found out.
    let second = insert("y", 100, &[(1, "older", 2), (2, "two", 2), (3, "three", 3)]);
    assert_eq!(apply(&mut s, &second, 2).await, (2, 1, vec![]));
    // Right after the miss (states read directly) and once the guess is tried again.
    for (i, secs) in [(4, 150), (5, 160), (6, 170)] {
        let b = insert("y", secs, &[(1, "older", 9), (i, "more", i)]);
        assert_eq!(apply(&mut s, &b, i as u64).await, (1, 1, vec![]));
    }
    let got = rows(&mut c).await;
    assert_eq!(got[0], (1, "newer".to_owned(), 1));
    assert_eq!(got.len(), 6);
    assert_eq!(states(&mut c).await, 6);
}

async fn a_new_row_postgres_refuses_keeps_no_state(copy: bool) {
    let (_pg, mut c, mut s) = prepared(copy).await;
    // Row 2 breaks the CHECK: parked, and no state recorded for it.
    let first = insert("x", 200, &[(1, "ok", 1), (2, "too big", 500)]);
    let (applied, superseded, parked) = apply(&mut s, &first, 1).await;
    assert_eq!((applied, superseded, parked.len()), (1, 0, 1));
    assert!(parked[0].contains("23514"), "{parked:?}");
    assert_eq!(states(&mut c).await, 1);
    // So an older, valid write of row 2 still applies (a stored state of the refused row
    // would make it lose).
    let second = insert("y", 100, &[(2, "fits", 2)]);
    assert_eq!(apply(&mut s, &second, 2).await, (1, 0, vec![]));
    assert_eq!(
        rows(&mut c).await,
        [(1, "ok".to_owned(), 1), (2, "fits".to_owned(), 2)]
    );
}

async fn a_known_key_in_a_later_chunk_undoes_the_chunks_before_it(copy: bool) {
    let (_pg, mut c, mut s) = prepared(copy).await;
    let first = insert("x", 200, &[(4_500, "newer", 1)]);
    assert_eq!(apply(&mut s, &first, 1).await, (1, 0, vec![]));
    // 5,000 keys, taken as new in chunks of 4,096: the known key 4,500 is in the second, so
    // the first chunk's writes must be undone before the states are read.
    let text: Vec<String> = (1..=5_000).map(|i| format!("r{i}")).collect();
    let big: Vec<(i64, &str, i64)> = (1..=5_000)
        .map(|i| (i, text[i as usize - 1].as_str(), i % 50))
        .collect();
    let second = insert("y", 100, &big);
    assert_eq!(apply(&mut s, &second, 2).await, (4_999, 1, vec![]));
    let got = rows(&mut c).await;
    assert_eq!(got.len(), 5_000);
    assert_eq!(got[4_499], (4_500, "newer".to_owned(), 1));
    assert_eq!(got[0], (1, "r1".to_owned(), 1));
    assert_eq!(states(&mut c).await, 5_000);
}

async fn a_row_here_without_a_state_is_merged_not_doubled(copy: bool) {
    let (_pg, mut c, mut s) = prepared(copy).await;
    // Written here and not yet back from the stream: a row without a state.
    sqlx::raw_sql("INSERT INTO public.t VALUES (2, 'local', 7)")
        .execute(&mut c)
        .await
        .unwrap();
    let b = insert("x", 100, &[(1, "one", 1), (2, "two", 2), (3, "three", 3)]);
    assert_eq!(apply(&mut s, &b, 1).await, (3, 0, vec![]));
    assert_eq!(
        rows(&mut c).await,
        [
            (1, "one".to_owned(), 1),
            (2, "two".to_owned(), 2),
            (3, "three".to_owned(), 3)
        ]
    );
    assert_eq!(states(&mut c).await, 3);
}

#[tokio::test]
async fn a_merged_value_the_column_no_longer_holds_is_parked_and_its_state_kept() {
    let (pg, mut c, s) = prepared(true).await;
    let mut s = s;
    let first = insert("x", 100, &[(1, "one", 9)]);
    assert_eq!(apply(&mut s, &first, 1).await, (1, 0, vec![]));
    let state = || async {
        let (b,): (Vec<u8>,) = sqlx::query_as("SELECT state FROM meshsync.row_state")
            .fetch_one(&mut pg.connect("postgres").await.unwrap())
            .await
            .unwrap();
        b
    };
    let before = state().await;
    // The column changes type under the stored value "one".
    drop(s);
    sqlx::raw_sql("ALTER TABLE public.t ALTER a TYPE int2 USING 0")
        .execute(&mut c)
        .await
        .unwrap();
    let mut s = sink(&pg, &mut c).await;
    // An update of n only: the merged row still holds a = "one", which int2 cannot hold.
    let mut update = insert("y", 200, &[(1, "", 5)]);
    update.rows[0].op = Op::Update;
    update.rows[0].cells[1] = Cell::Unchanged;
    let (applied, superseded, parked) = apply(&mut s, &update, 2).await;
    assert_eq!((applied, superseded), (0, 0), "{parked:?}");
    assert_eq!(parked.len(), 1);
    assert!(parked[0].contains("column \"a\""), "{parked:?}");
    // Nothing of it stored: neither the row nor the state moved.
    assert_eq!(state().await, before);
    assert_eq!(rows(&mut c).await, [(1, "0".to_owned(), 9)]);
}

/// Every supported type, and a row of NULLs, written to a new database; the rows as text.
async fn kinds_written(copy: bool) -> (Vec<String>, u64) {
    let pg = Postgres::start().await.unwrap();
    let mut c = pg.connect("postgres").await.unwrap();
    sqlx::raw_sql(ALL_TYPES_DDL).execute(&mut c).await.unwrap();
    let mut s = sink_of(&pg, &mut c, "kinds").await;
    s.set_copy(copy);
    let text = |t: &str| Value::Text(t.to_owned());
    let json = |t: &str| Value::Json(t.to_owned());
    let full = vec![
        Value::Int(1),
        Value::Int(-3),
        Value::Int(42),
        Value::Decimal("12345.678".into()),
        Value::Float(1.5),
        Value::Float(-2.25e-10),
        Value::Bool(true),
        // What COPY reads as syntax: tab, newline, carriage return, backslash, \N.
        text("h\u{e9}llo\tand\nlines\r\\N \\."),
        text("short"),
        text("ab"),
        Value::Bytes(vec![0xde, 0xad, 0x5c, 0x09, 0x0a]),
        Value::Uuid(*b"0123456789abcdef"),
        json("{\"k\": [1, \"\\t\"]}"),
        json("{\"b\": 1, \"a\": null}"),
        Value::LocalTimestamp(1_795_000_000_102_608),
        Value::Timestamp(1_795_000_000_102_600),
        Value::Date(20_418),
        Value::Time(62_499_500_000),
        text("happy"),
        json("[1, null, 3]"),
        json("[\"a b\", \"c\\\"d\", \"tab\\there\"]"),
    ];
    let nulls: Vec<Value> = std::iter::once(Value::Int(2))
        .chain(std::iter::repeat_n(Value::Null, full.len() - 1))
        .collect();
    let columns: Vec<String> = [
        "id", "s", "i", "n", "f4", "f8", "b", "t", "vc", "c", "by", "u", "j", "jb", "ts", "tz",
        "d", "tm", "m", "arr", "tarr",
    ]
    .map(String::from)
    .to_vec();
    let mut batch = insert("x", 100, &[]);
    batch.table = TableName::new("public", "kinds");
    batch.columns = columns;
    batch.rows = [full, nulls]
        .into_iter()
        .enumerate()
        .map(|(i, values)| RowChange {
            index: i as u32,
            op: Op::Insert,
            key: vec![values[0].clone()],
            cells: values.into_iter().map(Cell::Value).collect(),
            deltas: Vec::new(),
        })
        .collect();
    assert_eq!(apply(&mut s, &batch, 1).await, (2, 0, vec![]));
    let rows = sqlx::query_as("SELECT k::text FROM public.kinds k ORDER BY id")
        .fetch_all(&mut c)
        .await
        .unwrap()
        .into_iter()
        .map(|(t,): (String,)| t)
        .collect();
    (rows, s.copied_rows())
}

#[tokio::test]
async fn every_supported_type_is_copied_as_the_statements_would_write_it() {
    let (copied, n) = kinds_written(true).await;
    assert_eq!(
        n, 2,
        "both rows went through COPY, none fell back to statements"
    );
    let (inserted, n) = kinds_written(false).await;
    assert_eq!(n, 0);
    assert_eq!(copied, inserted);
    assert!(copied[0].contains("\\\\x"), "{}", copied[0]);
}

/// The stored keys of `public.t`'s states, as text.
async fn stored_keys(c: &mut PgConnection) -> Vec<String> {
    raw_keys(c)
        .await
        .into_iter()
        .map(|k| match k.first() {
            Some(0xff) => format!("ints {:02x?}", &k[1..]),
            _ => String::from_utf8_lossy(&k).into_owned(),
        })
        .collect()
}

#[tokio::test]
async fn states_stored_under_an_older_key_form_are_converted_not_lost() {
    let (pg, mut c, mut s) = prepared(true).await;
    let first = insert("x", 200, &[(1, "newer", 1), (-2, "minus", 2)]);
    assert_eq!(apply(&mut s, &first, 1).await, (2, 0, vec![]));
    drop(s);
    // As meshsync stored them before integer keys had their own form: JSON texts, no record.
    sqlx::raw_sql(
        "UPDATE meshsync.row_state SET pk = convert_to('[\"' || CASE WHEN get_byte(pk, 8) = 1
             THEN '1' ELSE '-2' END || '\"]', 'UTF8');
         DELETE FROM meshsync.key_form;",
    )
    .execute(&mut c)
    .await
    .unwrap();
    assert_eq!(stored_keys(&mut c).await, [r#"["-2"]"#, r#"["1"]"#]);
    // A new sink brings them into the integer form, so an older write still loses to them.
    let mut s = sink(&pg, &mut c).await;
    let ints = stored_keys(&mut c).await;
    assert_eq!(
        ints,
        [
            "ints [7f, ff, ff, ff, ff, ff, ff, fe]",
            "ints [80, 00, 00, 00, 00, 00, 00, 01]"
        ]
    );
    let older = insert(
        "y",
        100,
        &[(1, "older", 9), (-2, "older", 9), (3, "three", 3)],
    );
    assert_eq!(apply(&mut s, &older, 2).await, (1, 2, vec![]));
    assert_eq!(
        rows(&mut c).await,
        [
            (-2, "minus".to_owned(), 2),
            (1, "newer".to_owned(), 1),
            (3, "three".to_owned(), 3)
        ]
    );
    assert_eq!(states(&mut c).await, 3);
    drop(s);
    // The key column turns into text: the states go back to the texts form.
    sqlx::raw_sql("ALTER TABLE public.t ALTER COLUMN id TYPE text")
        .execute(&mut c)
        .await
        .unwrap();
    let _s = sink(&pg, &mut c).await;
    assert_eq!(
        stored_keys(&mut c).await,
        [r#"["-2"]"#, r#"["1"]"#, r#"["3"]"#]
    );
    // And a start with nothing to change changes nothing.
    drop(_s);
    let _s = sink(&pg, &mut c).await;
    assert_eq!(stored_keys(&mut c).await.len(), 3);
    drop(_s);
    // A form this meshsync does not know is refused, not misread.
    sqlx::raw_sql("UPDATE meshsync.key_form SET form = 'ints2'")
        .execute(&mut c)
        .await
        .unwrap();
    let refused = try_sink_of(&pg, &mut c, &["t"])
        .await
        .err()
        .expect("an unknown key form is refused");
    let text = refused.to_string();
    assert!(
        text.contains("\"ints2\"") && text.contains("upgrade"),
        "{text}"
    );
    assert_eq!(stored_keys(&mut c).await.len(), 3);
}

#[tokio::test]
async fn composite_integer_keys_convert_both_ways() {
    let pg = Postgres::start().await.unwrap();
    let mut c = pg.connect("postgres").await.unwrap();
    sqlx::raw_sql("CREATE TABLE public.c (a int4, b int8, v text, PRIMARY KEY (a, b))")
        .execute(&mut c)
        .await
        .unwrap();
    drop(sink_of(&pg, &mut c, "c").await);
    // States as an older meshsync stored them: JSON texts of the key, no recorded form.
    sqlx::raw_sql(
        "DELETE FROM meshsync.key_form;
         INSERT INTO meshsync.row_state (tbl, pk, state) VALUES
             ('public.c', convert_to('[\"1\",\"-5\"]', 'UTF8'), '\\x00'),
             ('public.c', convert_to('[\"-2147483648\",\"9223372036854775807\"]', 'UTF8'), '\\x00');",
    )
    .execute(&mut c)
    .await
    .unwrap();
    drop(sink_of(&pg, &mut c, "c").await);
    let flip = |i: i64| (i.cast_unsigned() ^ (1 << 63)).to_be_bytes();
    let key = |a: i64, b: i64| [&[0xff][..], &flip(a), &flip(b)].concat();
    let got = raw_keys(&mut c).await;
    assert_eq!(got, [key(-2_147_483_648, i64::MAX), key(1, -5)]);
    // Column b becomes text: back to the texts form, exactly as the sink writes it.
    sqlx::raw_sql("ALTER TABLE public.c ALTER COLUMN b TYPE text")
        .execute(&mut c)
        .await
        .unwrap();
    drop(sink_of(&pg, &mut c, "c").await);
    let got: Vec<String> = raw_keys(&mut c)
        .await
        .into_iter()
        .map(|k| String::from_utf8(k).unwrap())
        .collect();
    assert_eq!(
        got,
        [r#"["-2147483648","9223372036854775807"]"#, r#"["1","-5"]"#]
    );
}

/// The stored keys of every state, in index order.
async fn raw_keys(c: &mut PgConnection) -> Vec<Vec<u8>> {
    let keys: Vec<(Vec<u8>,)> = sqlx::query_as("SELECT pk FROM meshsync.row_state ORDER BY pk")
        .fetch_all(c)
        .await
        .unwrap();
    keys.into_iter().map(|(k,)| k).collect()
}
