//! Every PostgreSQL type meshsync carries arrives on the other peer unchanged, including an
//! unchanged TOASTed value under an update that did not touch it.

use std::time::Duration;

use meshsync_testkit::{ALL_TYPES_DDL as DDL, wait_until};
use sqlx::Row;

use crate::support::Mesh;

const INSERT: &str = "INSERT INTO public.kinds VALUES (
    1, -3, 42, 12345.678, 1.5, -2.25e-10, true, 'héllo', 'short', 'ab', '\\xdeadbeef',
    'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '{\"k\": [1, 2]}', '{\"b\": 1, \"a\": null}',
    '2026-11-26 17:21:39.102608', '2026-11-26 17:21:39.1026+05:30', '2026-11-26', '17:21:39.5',
    'happy', '{1,NULL,3}', '{\"a b\",\"c\\\"d\"}'),
    (2, NULL, NULL, NULL, NULL, NULL, NULL, repeat('big ', 5000), NULL, NULL, NULL, NULL, NULL,
    NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)";

/// Every column as text, as the receiving peer would print it.
const SELECT: &str = "SELECT k::text FROM public.kinds k ORDER BY id";

#[tokio::test]
async fn every_supported_type_replicates_exactly() {
    let mesh = Mesh::start_with(&["a", "b"], DDL, &["public.kinds"])
        .await
        .unwrap();
    let mut a = mesh.peers[0].connect().await.unwrap();
    sqlx::raw_sql(INSERT).execute(&mut a).await.unwrap();
    // Touch another column of the row with the big TOASTed text: the text must survive.
    sqlx::query("UPDATE public.kinds SET s = 7 WHERE id = 2")
        .execute(&mut a)
        .await
        .unwrap();

    let rows = |p: usize| {
        let pg = &mesh.peers[p].pg;
        async move {
            let mut c = pg.connect("app").await.unwrap();
            sqlx::query(SELECT)
                .fetch_all(&mut c)
                .await
                .unwrap()
                .iter()
                .map(|r| r.get::<String, _>(0))
                .collect::<Vec<_>>()
        }
    };
    let want = rows(0).await;
    assert_eq!(want.len(), 2);
    assert!(
        want[1].contains("big big") && want[1].starts_with("(2,7,"),
        "{}",
        &want[1][..40]
    );
    wait_until(
        "peer b to hold both rows exactly",
        Duration::from_secs(60),
        || {
            let want = want.clone();
            async move { (rows(1).await == want).then_some(()) }
        },
    )
    .await
    .unwrap();
}
