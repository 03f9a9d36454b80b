//! The web console (issue 21, done-when 3) as a browser shows it: `floe demo` runs its built-in
//! traffic, and headless Chromium loads every console page and dumps the DOM it rendered. The test
//! reads the tables out of that DOM: the demo topic and its six partitions, both demo groups with
//! non-negative lag and the slow one behind, the agent serving with its rates, and a throughput
//! plot. The overview of a cluster (rates summed over agents) is checked in console_cluster.rs.
//!
//! Each page is also captured as a 1280×900 screenshot; with `FLOE_UPDATE_SCREENSHOTS=1` they are
//! written to `docs/console/` (the README links them).
//!
//! Needs `chromium` (e2e/scripts/install-deps.sh installs it); without it the test fails saying so.

use anyhow::{bail, ensure, Context, Result};
use floe_e2e::{floe_binary, http_get, kill_child, read_banner, run_with_timeout, wait_until};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const FAST_GROUP: &str = "demo-readers";
const SLOW_GROUP: &str = "demo-slow-readers";
const PARTITIONS: usize = 6;

/// `floe demo` in a temporary data directory, killed when dropped.
struct Demo {
    child: Option<Child>,
    http: String,
    _data_dir: tempfile::TempDir,
}

impl Demo {
    fn start() -> Result<Self> {
        let data_dir = tempfile::Builder::new().prefix("floe-e2e-console-").tempdir()?;
        let mut child = Command::new(floe_binary()?)
            .arg("demo")
            .arg("--data-dir")
            .arg(data_dir.path())
            .args(["--kafka-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0", "--group-initial-rebalance-delay", "0s"])
            .args(["--log", &std::env::var("FLOE_E2E_LOG").unwrap_or_else(|_| "warn".into())])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("failed to start floe demo")?;
        let banner = match read_banner(&mut child, Duration::from_secs(30)) {
            Ok(banner) => banner,
            Err(error) => {
                let _ = kill_child(Some(child));
                return Err(error);
            }
        };
        Ok(Self { child: Some(child), http: banner.http, _data_dir: data_dir })
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.http)
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = kill_child(self.child.take());
    }
}

/// The Chromium binary on PATH, or a failure that says how to install it.
fn chromium() -> Result<PathBuf> {
    for name in ["chromium", "chromium-browser"] {
        let found = std::env::var_os("PATH")
            .map(|path| std::env::split_paths(&path).map(|directory| directory.join(name)).find(|candidate| candidate.is_file()))
            .unwrap_or_default();
        if let Some(found) = found {
            return Ok(found);
        }
    }
    bail!("chromium is not installed (the console test loads every page in headless Chromium): run e2e/scripts/install-deps.sh")
}

/// Headless Chromium with a profile of its own under `profile`, so runs never share state.
fn headless(chromium: &Path, profile: &Path) -> Command {
    let mut command = Command::new(chromium);
    command
        .args(["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run"])
        .arg(format!("--user-data-dir={}", profile.display()));
    command
}

/// The DOM Chromium rendered for `url`.
fn dump_dom(chromium: &Path, profile: &Path, url: &str) -> Result<String> {
    let mut command = headless(chromium, profile);
    command.arg("--dump-dom").arg(url);
    let finished = run_with_timeout(command, Duration::from_secs(60))?;
    ensure!(finished.status.success(), "chromium --dump-dom {url} failed ({}): {}", finished.status, finished.stderr);
    ensure!(finished.stdout.contains("</html>"), "chromium dumped no page for {url}: {:?}", finished.stdout);
    Ok(finished.stdout)
}

/// A 1280×900 screenshot of `url` written to `file`.
fn screenshot(chromium: &Path, profile: &Path, url: &str, file: &Path) -> Result<()> {
    let mut command = headless(chromium, profile);
    command.arg(format!("--screenshot={}", file.display())).arg("--window-size=1280,900").arg("--hide-scrollbars").arg(url);
    let finished = run_with_timeout(command, Duration::from_secs(60))?;
    ensure!(finished.status.success(), "chromium --screenshot {url} failed ({}): {}", finished.status, finished.stderr);
    let png = std::fs::read(file).with_context(|| format!("chromium wrote no screenshot of {url} to {}", file.display()))?;
    ensure!(png.starts_with(b"\x89PNG") && png.len() > 10_000, "the screenshot of {url} is not a PNG with content ({} bytes)", png.len());
    Ok(())
}

/// The text of every table body row in `html`, cell by cell, tags stripped and entities of the
/// console's escaping decoded.
fn table_rows(html: &str) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    for body in html.split("<tbody>").skip(1) {
        let body = body.split("</tbody>").next().unwrap_or_default();
        for row in body.split("<tr>").skip(1) {
            let cells = row
                .split("<td")
                .skip(1)
                .map(|cell| {
                    let inner = cell.split_once('>').map_or("", |(_, rest)| rest);
                    let inner = inner.split("</td>").next().unwrap_or_default();
                    text_of(inner)
                })
                .collect();
            rows.push(cells);
        }
    }
    rows
}

fn text_of(html: &str) -> String {
    let mut text = String::new();
    let mut in_tag = false;
    for character in html.chars() {
        match character {
            '<' => in_tag = true,
            '>' => in_tag = false,
            other if !in_tag => text.push(other),
            _ => {}
        }
    }
    text.replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", "\"").replace("&#39;", "'").replace("&amp;", "&").trim().to_string()
}

fn number(cell: &str) -> Result<i64> {
    cell.trim().parse().with_context(|| format!("{cell:?} is not a whole number"))
}

/// The row whose first cell is `first`.
fn row<'a>(rows: &'a [Vec<String>], first: &str) -> Result<&'a Vec<String>> {
    rows.iter().find(|row| row.first().is_some_and(|cell| cell == first)).with_context(|| format!("no row {first:?} in {rows:?}"))
}

/// The slow group's total lag in records, as the raw `/groups` page says (no browser: polled).
fn slow_group_lag(demo: &Demo) -> Result<i64> {
    let (status, html) = http_get(&demo.http, "/groups")?;
    ensure!(status == 200, "/groups answered {status}");
    let rows = table_rows(&html);
    number(&row(&rows, SLOW_GROUP)?[4])
}

#[test]
fn the_console_shows_the_demo_topic_its_groups_lag_and_the_agent_in_a_browser() -> Result<()> {
    let chromium = chromium()?;
    let started = Instant::now();
    let demo = Demo::start()?;
    let profile = tempfile::Builder::new().prefix("floe-e2e-chromium-").tempdir()?;
    wait_until("the slow demo group lags and the fast one has committed", Duration::from_secs(60), || {
        let (_, groups) = http_get(&demo.http, "/groups")?;
        let rows = table_rows(&groups);
        Ok(slow_group_lag(&demo)? > 0 && row(&rows, FAST_GROUP).is_ok())
    })?;
    // The overview plots samples taken every few seconds: wait for two with produce traffic.
    wait_until("the overview has plotted produce traffic", Duration::from_secs(30), || {
        let (_, overview) = http_get(&demo.http, "/")?;
        // The produce and fetch cards show the last sample's rates.
        Ok(overview.matches("<polyline").count() == 2 && !overview.contains("class=\"value\">0 B/s<"))
    })?;
    eprintln!("demo traffic and lag after {:?}", started.elapsed());

    // Overview: the agent, its rates and the plot.
    let overview = dump_dom(&chromium, profile.path(), &demo.url("/"))?;
    let agents = table_rows(&overview);
    let agent =
        agents.iter().find(|row| row.get(1).is_some_and(|address| address.contains("(this agent)"))).context("no local agent row")?;
    ensure!(number(&agent[0])? >= 0 && agent[4] == "serving", "the agent row: {agent:?}");
    // A single agent: its own rates are the totals, and the page says whose they are.
    ensure!(agent.len() == 8 && agent[5].ends_with("/s") && agent[5] != "0 B/s", "the agent row has no produce rate: {agent:?}");
    ensure!(overview.contains("Rates of this agent") && !overview.contains("did not answer"), "the rates' scope is not this agent");
    ensure!(overview.contains("<svg") && overview.matches("<polyline").count() == 2, "no throughput plot on the overview");
    ensure!(overview.contains("PUT cost per month") && overview.contains("healthy") && overview.contains("caught up"));

    // Topics: the demo topic with its six partitions and records in them.
    let topics = table_rows(&dump_dom(&chromium, profile.path(), &demo.url("/topics"))?);
    let topic = row(&topics, "demo")?;
    ensure!(number(&topic[1])? == PARTITIONS as i64, "demo topic row: {topic:?}");
    ensure!(number(&topic[2])? > 0 && number(&topic[4])? > 0, "the demo topic holds no records or objects: {topic:?}");
    let partitions = table_rows(&dump_dom(&chromium, profile.path(), &demo.url("/topics/demo"))?);
    ensure!(partitions.len() == PARTITIONS, "expected {PARTITIONS} partition rows, got {partitions:?}");
    for (index, partition) in partitions.iter().enumerate() {
        ensure!(number(&partition[0])? == index as i64, "partition rows out of order: {partitions:?}");
        ensure!(number(&partition[2])? > number(&partition[1])? && number(&partition[3])? > 0, "partition {index} is empty: {partition:?}");
    }

    // Groups: both Stable with their member (the demo's consumers join their groups), with
    // non-negative lag, the slow one behind.
    let groups = table_rows(&dump_dom(&chromium, profile.path(), &demo.url("/groups"))?);
    for group in [FAST_GROUP, SLOW_GROUP] {
        let found = row(&groups, group)?;
        ensure!(found[1] == "Stable" && number(&found[2])? == 1, "group {group} is not a Stable group of one member: {found:?}");
        ensure!(number(&found[3])? == PARTITIONS as i64 && number(&found[4])? >= 0, "group row: {found:?}");
    }
    ensure!(number(&row(&groups, SLOW_GROUP)?[4])? > 0, "the slow group does not lag: {groups:?}");
    for group in [FAST_GROUP, SLOW_GROUP] {
        let offsets = table_rows(&dump_dom(&chromium, profile.path(), &demo.url(&format!("/groups/{group}")))?);
        let offsets: Vec<&Vec<String>> = offsets.iter().filter(|row| row.first().is_some_and(|topic| topic == "demo")).collect();
        ensure!(offsets.len() == PARTITIONS, "group {group}: expected {PARTITIONS} offset rows, got {offsets:?}");
        let mut lag = 0;
        for offset in &offsets {
            let (committed, end, records) = (number(&offset[2])?, number(&offset[3])?, number(&offset[4])?);
            ensure!(records >= 0 && committed <= end && records == end - committed, "group {group}: {offset:?}");
            lag += records;
        }
        if group == SLOW_GROUP {
            ensure!(lag > 0, "the slow group's partitions show no lag: {offsets:?}");
        }
    }
    eprintln!("pages checked after {:?}", started.elapsed());

    // Screenshots: always taken (a blank capture fails the test), kept with FLOE_UPDATE_SCREENSHOTS=1.
    let update = std::env::var("FLOE_UPDATE_SCREENSHOTS").is_ok_and(|value| value == "1");
    if update {
        // Committed screenshots show a plot with a minute of history, not its first few points.
        wait_until("the overview plots a minute of samples", Duration::from_secs(120), || {
            let (_, overview) = http_get(&demo.http, "/")?;
            let points = overview.split("points=\"").nth(1).and_then(|rest| rest.split('"').next()).unwrap_or_default();
            Ok(points.split(' ').count() >= 20)
        })?;
    }
    let screenshots = tempfile::Builder::new().prefix("floe-e2e-screenshots-").tempdir()?;
    let committed = floe_e2e::repository_root().join("docs/console");
    for (path, name) in [
        ("/", "overview"),
        ("/topics", "topics"),
        ("/topics/demo", "topic"),
        ("/groups", "groups"),
        (&format!("/groups/{SLOW_GROUP}") as &str, "group"),
    ] {
        let file = screenshots.path().join(format!("{name}.png"));
        screenshot(&chromium, profile.path(), &demo.url(path), &file)?;
        if update {
            std::fs::create_dir_all(&committed)?;
            std::fs::copy(&file, committed.join(format!("{name}.png")))?;
        }
    }
    eprintln!("screenshots taken after {:?}{}", started.elapsed(), if update { " (written to docs/console)" } else { "" });
    Ok(())
}

#[test]
fn table_rows_read_cells_without_their_markup() {
    let html = "<table><thead><tr><th>Group</th></tr></thead><tbody><tr><td><a href=\"/groups/a\">a&amp;b</a></td>\
                <td class=\"number\">7</td></tr></tbody></table>";
    assert_eq!(table_rows(html), vec![vec!["a&b".to_string(), "7".to_string()]]);
}
