//! The conflict log through real agents: a row updated on two PostgreSQL peers while one agent
//! is down is merged on both, and `meshsync conflicts` (the real binary) lists the conflict with
//! its policy and winner, the winner's value being the one both peers hold; for a table in
//! `merge.sensitive` the values appear neither in its output nor in the stream.

use std::{path::Path, time::Duration};

use async_nats::jetstream;
use meshsync_e2e::agent;
use meshsync_testkit::wait_until;
use meshsync_wire::conflict::{self, ConflictMessage, Values};
use sqlx::PgConnection;

use crate::support::Mesh;

const WAIT: Duration = Duration::from_secs(60);

async fn exec(c: &mut PgConnection, sql: &str) {
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
        .execute(c)
        .await
        .unwrap();
}

/// Runs `meshsync conflicts --config <config> <args>`: (exit status 0, stdout, stderr).
fn conflicts_cmd(config: &Path, args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new(agent::binary().unwrap())
        .arg("conflicts")
        .arg("--config")
        .arg(config)
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The `--json` lines of `meshsync conflicts`, as records.
fn json_conflicts(config: &Path, args: &[&str]) -> Vec<ConflictMessage> {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let (ok, out, err) = conflicts_cmd(config, &all);
    assert!(ok, "meshsync conflicts --json failed: {err}");
    out.lines()
        .map(|l| conflict::decode(l.as_bytes()).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// Whether `m` is the conflict of key 1, column v of public.items.
fn is_the_conflict(m: &ConflictMessage) -> bool {
    m.table == "public.items" && m.key_text() == "[1]" && m.column.as_deref() == Some("v")
}

/// Every message of the conflict stream: (headers as `name: value` lines, body).
async fn stream_messages(client: &async_nats::Client) -> Vec<(String, String)> {
    let js = jetstream::new(client.clone());
    let mut s = js.get_stream(conflict::STREAM).await.unwrap();
    let last = s.info().await.unwrap().state.last_sequence;
    let mut out = Vec::new();
    for seq in 1..=last {
        let m = s.get_raw_message(seq).await.unwrap();
        let headers: String = m
            .headers
            .iter()
            .flat_map(|(name, values)| {
                values
                    .iter()
                    .map(move |v| format!("{name}: {}\n", v.as_str()))
            })
            .collect();
        out.push((headers, String::from_utf8_lossy(&m.payload).into_owned()));
    }
    out
}

/// Inserts row 1 through a, then updates its `v` on a and, later, on b while b's agent is down
/// (so neither update saw the other), restarts b and waits until both peers hold b's value.
async fn concurrent_updates(mesh: &mut Mesh) {
    let mut a = mesh.peers[0].connect().await.unwrap();
    exec(
        &mut a,
        "INSERT INTO public.items (id, v, n) VALUES (1, 'base', 0)",
    )
    .await;
    mesh.wait_all("the row", WAIT, |r| r.iter().any(|r| r.0 == 1))
        .await;
    mesh.wait_drained(WAIT).await;

    mesh.peers[1].agent.as_mut().unwrap().kill9().unwrap();
    exec(&mut a, "UPDATE public.items SET v = 'from a' WHERE id = 1").await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut b = mesh.peers[1].connect().await.unwrap();
    exec(&mut b, "UPDATE public.items SET v = 'from b' WHERE id = 1").await;
    mesh.peers[1].agent.as_mut().unwrap().restart().unwrap();

    // b wrote last, so per-column last-writer-wins keeps b's value everywhere.
    mesh.wait_all("b's value on both peers", WAIT, |r| {
        r.iter().any(|r| r.0 == 1 && r.1 == "from b")
    })
    .await;
    mesh.wait_drained(WAIT).await;
}

/// Waits until a's conflict log lists the conflict of key 1; a's records.
async fn wait_logged(config: &Path) -> Vec<ConflictMessage> {
    wait_until("a's conflict in `meshsync conflicts`", WAIT, || async {
        let got = json_conflicts(config, &[]);
        got.iter().any(is_the_conflict).then_some(got)
    })
    .await
    .unwrap_or_else(|e| {
        let (_, out, err) = conflicts_cmd(config, &["--all-peers"]);
        panic!("{e}; meshsync conflicts --all-peers:\n{out}{err}")
    })
}

#[tokio::test]
async fn meshsync_conflicts_lists_the_conflict_and_the_winner_both_peers_hold() {
    let mut mesh = Mesh::start(&["a", "b"]).await.unwrap();
    concurrent_updates(&mut mesh).await;
    let held = mesh.peers[0].rows().await.unwrap();
    assert_eq!(held, mesh.peers[1].rows().await.unwrap());
    let held = held.iter().find(|r| r.0 == 1).unwrap().1.clone();
    assert_eq!(held, "from b");

    let config_a = mesh.peers[0].config.clone();
    let got = wait_logged(&config_a).await;
    // By default only a's own conflicts.
    assert!(got.iter().all(|m| m.resolved_by == "a"), "{got:?}");
    let c = got.iter().find(|m| is_the_conflict(m)).unwrap();
    assert_eq!(c.policy, "lww-column");
    assert_eq!(c.values, Values::Included);
    assert_eq!(c.winner.as_str(), "incoming", "{c:?}");
    assert_eq!(c.incoming.origin, "b");
    assert_eq!(c.local.origin, "a");
    assert_eq!(
        c.incoming_value.as_ref().and_then(|v| v.as_str()),
        Some(held.as_str()),
        "the winner's value is the one both peers hold: {c:?}"
    );
    assert!(c.local_value.is_some(), "{c:?}");

    // The text a person reads: table, key, column, policy, winner, versions, values.
    let (ok, text, err) = conflicts_cmd(&config_a, &["--table", "public.items", "--since", "10m"]);
    assert!(ok, "{err}");
    let heading = text
        .lines()
        .find(|l| l.contains("public.items key [1] column v"))
        .unwrap_or_else(|| panic!("no heading for key [1]:\n{text}"));
    assert!(
        heading.contains("policy lww-column")
            && heading.contains("winner incoming")
            && heading.contains("resolved by a"),
        "{heading}"
    );
    let winner_line = text
        .lines()
        .find(|l| l.trim_start().starts_with("incoming") && l.contains("<- winner"))
        .unwrap_or_else(|| panic!("no winner line:\n{text}"));
    assert!(winner_line.contains("\"from b\""), "{winner_line}");
    assert!(winner_line.contains("@b#"), "{winner_line}");
    assert!(text.contains("@a#"), "{text}");
    // Another table, or nothing in the window: nothing listed, still exit 0.
    let (ok, text, _) = conflicts_cmd(&config_a, &["--table", "public.other"]);
    assert!(ok && text.starts_with("0 conflict(s)"), "{text}");

    // The stream tells the same story in its headers.
    let stored = stream_messages(&mesh.client).await;
    assert!(
        stored
            .iter()
            .any(|(h, _)| h.contains("Mesh-Table: public.items")
                && h.contains("Mesh-Key: [1]")
                && h.contains("Mesh-Column: v")
                && h.contains("Mesh-Resolved-By: a")
                && h.contains("Mesh-Incoming-Value: \"from b\"")),
        "{stored:?}"
    );
}

#[tokio::test]
async fn a_sensitive_tables_conflict_is_listed_without_its_values() {
    let mut mesh = Mesh::start_configured(
        &["a", "b"],
        "",
        &[],
        "[merge]\nsensitive = [\"public.items\"]\n",
    )
    .await
    .unwrap();
    concurrent_updates(&mut mesh).await;

    let config_a = mesh.peers[0].config.clone();
    let got = wait_logged(&config_a).await;
    let c = got.iter().find(|m| is_the_conflict(m)).unwrap();
    assert_eq!(c.values, Values::Omitted);
    assert_eq!(c.winner.as_str(), "incoming");
    assert_eq!((&c.local_value, &c.incoming_value), (&None, &None));

    for args in [&["--all-peers"][..], &["--all-peers", "--json"][..]] {
        let (ok, text, err) = conflicts_cmd(&config_a, args);
        assert!(ok, "{err}");
        assert!(text.contains("public.items"), "{text}");
        assert!(
            !text.contains("from a") && !text.contains("from b") && !text.contains("base"),
            "a value of a sensitive table in `meshsync conflicts {args:?}`:\n{text}"
        );
    }
    let (_, text, _) = conflicts_cmd(&config_a, &[]);
    assert!(text.contains("(value omitted: sensitive table)"), "{text}");

    let stored = stream_messages(&mesh.client).await;
    assert!(!stored.is_empty());
    for (headers, body) in &stored {
        for value in ["from a", "from b", "base"] {
            assert!(
                !headers.contains(value) && !body.contains(value),
                "a value of a sensitive table in the stream:\n{headers}\n{body}"
            );
        }
        assert!(headers.contains("Mesh-Values: omitted"), "{headers}");
    }
}

/// A conflict resolved by a transaction whose agent dies right after the commit is still in the
/// log, once: records are published before the commit (after it, the kill lost them).
#[tokio::test]
async fn a_conflict_is_logged_even_when_the_agent_dies_right_after_the_commit() {
    let mut mesh = Mesh::start(&["a", "b"]).await.unwrap();
    let mut a = mesh.peers[0].connect().await.unwrap();
    exec(
        &mut a,
        "INSERT INTO public.items (id, v, n) VALUES (1, 'base', 0)",
    )
    .await;
    mesh.wait_all("the row", WAIT, |r| r.iter().any(|r| r.0 == 1))
        .await;
    mesh.wait_drained(WAIT).await;

    // a pauses after every apply commit; b is down while both update the row.
    let a_agent = mesh.peers[0].agent.as_mut().unwrap();
    a_agent.kill9().unwrap();
    a_agent.set_env(&[("MESHSYNC_FAILPOINT", "apply-pause-after-commit:3000")]);
    a_agent.restart().unwrap();
    mesh.peers[1].agent.as_mut().unwrap().kill9().unwrap();
    exec(&mut a, "UPDATE public.items SET v = 'from a' WHERE id = 1").await;
    let js = jetstream::new(mesh.client.clone());
    let published = wait_until("a's update on the stream", WAIT, || async {
        let info = js.get_stream("MESH").await.ok()?.info().await.ok()?.clone();
        (info.state.messages >= 2).then_some(info.state.last_sequence)
    })
    .await
    .unwrap();
    let mut b = mesh.peers[1].connect().await.unwrap();
    exec(&mut b, "UPDATE public.items SET v = 'from b' WHERE id = 1").await;
    mesh.peers[1].agent.as_mut().unwrap().restart().unwrap();

    // b's update is the next message; a resolves the conflict, commits, pauses: kill it there.
    let paused = format!("upto={}", published + 1);
    let log = || mesh.peers[0].agent.as_ref().unwrap().log();
    wait_until(
        "a paused right after committing b's update",
        WAIT,
        || async {
            log()
                .lines()
                .any(|l| l.contains("apply paused after commit") && l.ends_with(&paused))
                .then_some(())
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}; log:\n{}", log()));
    let a_agent = mesh.peers[0].agent.as_mut().unwrap();
    a_agent.kill9().unwrap();
    a_agent.set_env(&[]);
    a_agent.restart().unwrap();
    mesh.wait_all("b's value on both peers", WAIT, |r| {
        r.iter().any(|r| r.0 == 1 && r.1 == "from b")
    })
    .await;
    mesh.wait_drained(WAIT).await;

    let logged: Vec<(String, String)> = stream_messages(&mesh.client)
        .await
        .into_iter()
        .filter(|(h, _)| {
            h.contains("Mesh-Resolved-By: a")
                && h.contains("Mesh-Key: [1]")
                && h.contains("Mesh-Column: v")
        })
        .collect();
    assert_eq!(
        logged.len(),
        1,
        "a's conflict is logged exactly once: {logged:?}"
    );
}
