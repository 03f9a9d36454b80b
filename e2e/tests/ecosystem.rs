//! The Kafka ecosystem on Floe, unchanged (issue 19): Kafka Streams 4.1.1's word count, with its
//! repartition topic and its compacted changelog, run by the Java client's `WordCount`
//! (e2e/java), and a Kafka Connect 4.1.1 distributed worker with the FileStream connectors. The
//! suite checks the counts and the files; the applications know nothing of the test.

use anyhow::{bail, ensure, Context, Result};
use floe_e2e::matrix::Cell;
use floe_e2e::{http_get, java_main, kafka, metric_value, Playground};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Message, Offset, TopicPartitionList};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const WORDS: [&str; 12] = ["kafka", "floe", "stream", "table", "object", "storage", "agent", "etcd", "journal", "offset", "key", "value"];

/// Line `index` of the input: a few words chosen from `WORDS` by the index.
fn line(index: u64) -> String {
    (0..(index % 5 + 1)).map(|position| WORDS[((index * 7 + position * 3) % WORDS.len() as u64) as usize]).collect::<Vec<_>>().join(" ")
}

fn count_words(lines: std::ops::Range<u64>, counts: &mut BTreeMap<String, i64>) {
    for index in lines {
        for word in line(index).split(' ') {
            *counts.entry(word.to_string()).or_default() += 1;
        }
    }
}

async fn produce_lines(bootstrap: &str, topic: &str, lines: std::ops::Range<u64>) -> Result<()> {
    let producer: FutureProducer = kafka::config(bootstrap).set("acks", "all").set("linger.ms", "10").create()?;
    let mut deliveries = Vec::new();
    for index in lines {
        let key = index.to_string();
        let value = line(index);
        let delivery = producer
            .send_result(FutureRecord::to(topic).key(&key).payload(&value))
            .map_err(|(error, _)| anyhow::anyhow!("enqueue failed: {error}"))?;
        deliveries.push(delivery);
    }
    for delivery in deliveries {
        delivery.await?.map_err(|(error, _)| anyhow::anyhow!("produce failed: {error}"))?;
    }
    Ok(())
}

/// A running `WordCount`, stopped with SIGTERM when dropped.
struct WordCountApp {
    child: Child,
    states: mpsc::Receiver<String>,
}

impl WordCountApp {
    /// `application_id` counts the lines of `lines` into `output` under `guarantee`
    /// (`at_least_once` or `exactly_once_v2`).
    fn start(bootstrap: &str, application_id: &str, output: &str, guarantee: &str, state_dir: &std::path::Path) -> Result<Self> {
        let state_dir = state_dir.to_string_lossy().into_owned();
        // Kafka's client logs go to a file kept after the test (the suite's output stays readable).
        let log = std::fs::OpenOptions::new().create(true).append(true).open(floe_e2e::target_directory().join("word-count.log"))?;
        let mut child = java_main("dev.floe.e2e.WordCount", &[bootstrap, application_id, "lines", output, guarantee, &state_dir])?
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .context("starting the Kafka Streams word count")?;
        let stdout = child.stdout.take().expect("piped");
        let (sender, states) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        Ok(Self { child, states })
    }

    /// Waits for the application to report RUNNING; fails if it reports ERROR or exits.
    fn wait_running(&mut self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            match self.states.recv_timeout(Duration::from_millis(200)) {
                Ok(line) if line.contains("\"RUNNING\"") => return Ok(()),
                Ok(line) if line.contains("\"ERROR\"") => bail!("the word count failed: {line}"),
                Ok(_) | Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => bail!("the word count exited: {:?}", self.child.wait()?),
            }
        }
        bail!("the word count was not RUNNING within {timeout:?}")
    }

    fn stop(mut self) -> Result<()> {
        stop_jvm(&mut self.child, "the word count")
    }
}

/// SIGTERM to a JVM, then waits (at most 60 s) for it to exit cleanly: with 0, or with 128 +
/// SIGTERM, which the JVM exits with once its shutdown hooks (closing the application) have run.
fn stop_jvm(child: &mut Child, what: &str) -> Result<()> {
    std::process::Command::new("kill").arg("-TERM").arg(child.id().to_string()).status()?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait()? {
            ensure!(status.success() || status.code() == Some(143), "{what} exited with {status}");
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    bail!("{what} did not stop within 60 s of SIGTERM")
}

impl Drop for WordCountApp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The latest count of every word in the output topic (3 partitions, one word in one partition).
fn latest_counts(
    consumer: &BaseConsumer,
    counts: &mut BTreeMap<String, i64>,
    until: Instant,
    expected: &BTreeMap<String, i64>,
) -> Result<()> {
    while Instant::now() < until && counts != expected {
        let Some(message) = consumer.poll(Duration::from_millis(200)) else { continue };
        let message = match message {
            // A restarted agent stays in Metadata, at its old address, until its registry lease
            // lapses; librdkafka reports each failed connection to it and carries on.
            Err(rdkafka::error::KafkaError::MessageConsumption(rdkafka::types::RDKafkaErrorCode::BrokerTransportFailure)) => continue,
            other => other?,
        };
        let word = String::from_utf8_lossy(message.key().unwrap_or_default()).into_owned();
        let bytes: [u8; 8] = message.payload().unwrap_or_default().try_into().context("a count is 8 bytes (Serdes.Long)")?;
        counts.insert(word, i64::from_be_bytes(bytes));
    }
    Ok(())
}

/// A reader of `output`'s counts; read_committed (librdkafka's default), so under
/// `exactly_once_v2` it sees only counts whose transaction committed.
fn output_reader(bootstrap: &str, output: &str) -> Result<BaseConsumer> {
    let consumer: BaseConsumer = kafka::config(bootstrap)
        .set("group.id", "count-reader")
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .create()?;
    let mut assignment = TopicPartitionList::new();
    for partition in 0..3 {
        assignment.add_partition_offset(output, partition, Offset::Beginning)?;
    }
    consumer.assign(&assignment)?;
    Ok(consumer)
}

fn wait_for_counts(bootstrap: &str, output: &str, expected: &BTreeMap<String, i64>, timeout: Duration) -> Result<Duration> {
    let started = Instant::now();
    let consumer = output_reader(bootstrap, output)?;
    let mut counts = BTreeMap::new();
    latest_counts(&consumer, &mut counts, started + timeout, expected)?;
    ensure!(&counts == expected, "after {timeout:?} the word count in {output} says {counts:?}, expected {expected:?}");
    Ok(started.elapsed())
}

/// Issue 19, done-when 1 (at_least_once on the playground): Kafka Streams' word count counts
/// every word exactly; stopped and started again with an empty state directory, it restores its
/// counts from the changelog topic (which key compaction has cleaned meanwhile) and goes on
/// counting exactly; the counts read back after the playground restarted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_streams_word_count_counts_exactly_and_restores_from_its_compacted_changelog() -> Result<()> {
    let cell = Cell::open(
        "java",
        "compaction",
        "Kafka Streams' word count restores its counts from a changelog key compaction cleaned, and counts on exactly",
    );
    const FIRST: u64 = 2_000;
    const SECOND: u64 = 1_000;
    let started = Instant::now();
    let mut playground = Playground::start(&["--key-compaction-interval", "1s"])?;
    let admin: AdminClient<DefaultClientContext> = kafka::config(&playground.bootstrap).create()?;
    let topics = [NewTopic::new("lines", 3, TopicReplication::Fixed(1)), NewTopic::new("word-counts", 3, TopicReplication::Fixed(1))];
    for result in admin.create_topics(&topics, &AdminOptions::new()).await? {
        if let Err((name, error)) = result {
            bail!("failed to create {name}: {error}");
        }
    }
    let mut expected = BTreeMap::new();
    produce_lines(&playground.bootstrap, "lines", 0..FIRST).await?;
    count_words(0..FIRST, &mut expected);

    let first_state = tempfile::Builder::new().prefix("floe-e2e-streams-").tempdir()?;
    let mut app = WordCountApp::start(&playground.bootstrap, "word-count", "word-counts", "at_least_once", first_state.path())?;
    app.wait_running(Duration::from_secs(90))?;
    println!("{:?}: the word count is running", started.elapsed());
    let took = wait_for_counts(&playground.bootstrap, "word-counts", &expected, Duration::from_secs(90))?;
    println!("the word count counted {FIRST} lines in {took:?}");
    app.stop()?;
    println!("{:?}: the word count stopped", started.elapsed());

    // Compaction must have cleaned the changelog before the restore reads it.
    let removed = || -> Result<f64> {
        let (_, metrics) = http_get(&playground.http, "/metrics")?;
        Ok(metric_value(&metrics, "floe_key_compaction_records_removed_total").unwrap_or_default())
    };
    floe_e2e::wait_until("key compaction removed records from the changelog", Duration::from_secs(30), || Ok(removed()? > 0.0))?;

    produce_lines(&playground.bootstrap, "lines", FIRST..FIRST + SECOND).await?;
    count_words(FIRST..FIRST + SECOND, &mut expected);
    let second_state = tempfile::Builder::new().prefix("floe-e2e-streams-").tempdir()?;
    let mut app = WordCountApp::start(&playground.bootstrap, "word-count", "word-counts", "at_least_once", second_state.path())?;
    app.wait_running(Duration::from_secs(90))?;
    println!("{:?}: the word count is running", started.elapsed());
    let took = wait_for_counts(&playground.bootstrap, "word-counts", &expected, Duration::from_secs(90))?;
    println!("restored from the changelog ({} records removed by key compaction) and counted {SECOND} more lines in {took:?}", removed()?);
    app.stop()?;
    println!("{:?}: the word count stopped", started.elapsed());

    playground.restart()?;
    println!("{:?}: the playground restarted", started.elapsed());
    wait_for_counts(&playground.bootstrap, "word-counts", &expected, Duration::from_secs(30)).context("after the playground restarted")?;
    cell.pass();
    Ok(())
}

/// `POST path` with a JSON body; the status and body of the answer.
fn http_post_json(address: &str, path: &str, body: &str) -> Result<(u16, String)> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(address)?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let status = response.split_whitespace().nth(1).and_then(|code| code.parse().ok()).context("malformed HTTP response")?;
    Ok((status, response.split_once("\r\n\r\n").map(|(_, body)| body.to_string()).unwrap_or_default()))
}

/// A Kafka Connect 4.1.1 distributed worker (`ConnectDistributed`), stopped with SIGTERM.
struct ConnectWorker {
    child: Child,
    rest: String,
}

impl ConnectWorker {
    fn start(properties: &std::path::Path, rest: &str, log: &std::path::Path) -> Result<Self> {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(log)?;
        let child = java_main("org.apache.kafka.connect.cli.ConnectDistributed", &[&properties.to_string_lossy()])?
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting the Kafka Connect worker")?;
        let mut worker = Self { child, rest: rest.to_string() };
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if let Some(status) = worker.child.try_wait()? {
                bail!("the Connect worker exited with {status} while starting");
            }
            if matches!(http_get(&worker.rest, "/connectors"), Ok((200, _))) {
                return Ok(worker);
            }
            ensure!(Instant::now() < deadline, "the Connect worker's REST API did not answer within 120 s");
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    fn stop(mut self) -> Result<()> {
        stop_jvm(&mut self.child, "the Connect worker")
    }
}

impl Drop for ConnectWorker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until `path` holds exactly `expected` lines.
fn wait_for_lines(path: &std::path::Path, expected: &[String], timeout: Duration) -> Result<Duration> {
    let started = Instant::now();
    loop {
        let lines: Vec<String> = std::fs::read_to_string(path).unwrap_or_default().lines().map(str::to_string).collect();
        if lines == expected {
            return Ok(started.elapsed());
        }
        ensure!(
            lines.len() <= expected.len() && expected.starts_with(&lines),
            "{} holds {} lines that are not a prefix of the {} expected (a duplicate or a reorder), e.g. {:?}",
            path.display(),
            lines.len(),
            expected.len(),
            lines.iter().zip(expected).find(|(line, expected)| line != expected)
        );
        ensure!(started.elapsed() < timeout, "{} holds {} of the {} lines after {timeout:?}", path.display(), lines.len(), expected.len());
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Issue 19, done-when 2: a Kafka Connect 4.1.1 distributed worker starts on Floe (its config,
/// offset and status topics compacted, as it checks), runs a FileStream source and sink round trip,
/// and after a worker restart resumes from its stored offsets and configs without a duplicate;
/// the topic reads back exactly once after the playground restarted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_connect_runs_a_file_round_trip_and_resumes_from_its_stored_offsets_after_a_restart() -> Result<()> {
    let mut playground = Playground::start(&["--key-compaction-interval", "2s"])?;
    // The connectors' topic is created first, as with Kafka's auto-creation off (Connect creates
    // its own three topics, compacted, and checks their cleanup.policy).
    kafka::create_topic(&playground.bootstrap, "connect-lines", 1).await?;
    let directory = tempfile::Builder::new().prefix("floe-e2e-connect-").tempdir()?;
    let (input, output) = (directory.path().join("in.txt"), directory.path().join("out.txt"));
    let lines: Vec<String> = (0..800).map(|index| format!("line {index} of the Connect round trip")).collect();
    std::fs::write(&input, lines[..500].iter().map(|line| format!("{line}\n")).collect::<String>())?;
    let rest = format!("127.0.0.1:{}", floe_e2e::external_metrics::free_port()?);
    let properties = directory.path().join("worker.properties");
    std::fs::write(
        &properties,
        format!(
            "bootstrap.servers={}\ngroup.id=floe-connect\nlisteners=http://{rest}\n\
             key.converter=org.apache.kafka.connect.storage.StringConverter\n\
             value.converter=org.apache.kafka.connect.storage.StringConverter\n\
             config.storage.topic=connect-configs\noffset.storage.topic=connect-offsets\nstatus.storage.topic=connect-status\n\
             config.storage.replication.factor=-1\noffset.storage.replication.factor=-1\nstatus.storage.replication.factor=-1\n\
             offset.flush.interval.ms=1000\n",
            playground.bootstrap
        ),
    )?;
    // Kept after the test (the temporary directory is not) for whoever reads a failure.
    let log = floe_e2e::target_directory().join("connect-worker.log");
    std::fs::write(&log, "")?;
    let started = Instant::now();
    let worker = ConnectWorker::start(&properties, &rest, &log)?;
    println!("{:?}: the Connect worker is up", started.elapsed());
    let connector = |name: &str, class: &str, file: &std::path::Path, topic_key: &str| {
        format!(
            r#"{{"name":"{name}","config":{{"connector.class":"{class}","tasks.max":"1","file":"{}","{topic_key}":"connect-lines"}}}}"#,
            file.display()
        )
    };
    for body in [
        connector("file-source", "org.apache.kafka.connect.file.FileStreamSourceConnector", &input, "topic"),
        connector("file-sink", "org.apache.kafka.connect.file.FileStreamSinkConnector", &output, "topics"),
    ] {
        let (status, answer) = http_post_json(&rest, "/connectors", &body)?;
        ensure!(status == 201, "creating a connector answered {status}: {answer}");
    }
    let took = wait_for_lines(&output, &lines[..500], Duration::from_secs(90))?;
    println!("{:?}: 500 lines went through Kafka Connect in {took:?}", started.elapsed());
    worker.stop()?;

    std::fs::write(&input, lines.iter().map(|line| format!("{line}\n")).collect::<String>())?;
    let worker = ConnectWorker::start(&properties, &rest, &log)?;
    let took = wait_for_lines(&output, &lines, Duration::from_secs(90))?;
    println!("{:?}: after a restart the worker resumed and carried the 300 new lines in {took:?}", started.elapsed());
    worker.stop()?;

    playground.restart()?;
    let read = kafka::read_all(&playground.bootstrap, "connect-lines", 1, Duration::from_secs(30))?;
    let values: Vec<String> = read.values().flatten().map(|record| String::from_utf8_lossy(&record.value).into_owned()).collect();
    ensure!(
        values == lines,
        "after the playground restarted connect-lines holds {} records, not the {} lines once each",
        values.len(),
        lines.len()
    );
    Ok(())
}

/// Issue 19, done-when 1 (cluster mode): two word counts, one `at_least_once` and one
/// `exactly_once_v2` (transactions: its output, changelog and input offsets commit together), count
/// exactly while one of three agents is killed and restarted in the middle of their work; the
/// counts, read with read_committed, are read back again after every agent restarted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_streams_word_counts_count_exactly_with_both_guarantees_while_an_agent_is_killed_and_restarted() -> Result<()> {
    use floe_e2e::cluster::{Agent, Infrastructure};
    let cell = Cell::open(
        "java",
        "transactions",
        "Kafka Streams under exactly_once_v2 counts exactly while an agent is killed and restarted (read_committed output)",
    );
    const FIRST: u64 = 1_500;
    const SECOND: u64 = 1_500;
    const APPLICATIONS: [(&str, &str, &str); 2] =
        [("word-count", "word-counts", "at_least_once"), ("word-count-eos", "word-counts-eos", "exactly_once_v2")];
    let flags = ["--registry-ttl", "3s", "--key-compaction-interval", "2s"];
    let infrastructure = Infrastructure::start()?;
    let mut agents = [
        Agent::start(&infrastructure, "streams", &flags)?,
        Agent::start(&infrastructure, "streams", &flags)?,
        Agent::start(&infrastructure, "streams", &flags)?,
    ];
    let bootstrap = |agents: &[Agent; 3]| agents.iter().map(|agent| agent.bootstrap.clone()).collect::<Vec<_>>().join(",");
    let admin: AdminClient<DefaultClientContext> = kafka::config(&bootstrap(&agents)).create()?;
    let mut topics = vec![NewTopic::new("lines", 6, TopicReplication::Fixed(1))];
    topics.extend(APPLICATIONS.iter().map(|(_, output, _)| NewTopic::new(output, 3, TopicReplication::Fixed(1))));
    for result in admin.create_topics(&topics, &AdminOptions::new()).await? {
        if let Err((name, error)) = result {
            bail!("failed to create {name}: {error}");
        }
    }
    let mut expected = BTreeMap::new();
    produce_lines(&agents[0].bootstrap, "lines", 0..FIRST).await?;
    count_words(0..FIRST, &mut expected);
    let mut apps = Vec::new();
    let mut states = Vec::new();
    for (application_id, output, guarantee) in APPLICATIONS {
        let state = tempfile::Builder::new().prefix("floe-e2e-streams-").tempdir()?;
        apps.push(WordCountApp::start(&bootstrap(&agents), application_id, output, guarantee, state.path())?);
        states.push(state);
    }
    for app in &mut apps {
        app.wait_running(Duration::from_secs(90))?;
    }
    for (_, output, _) in APPLICATIONS {
        wait_for_counts(&agents[0].bootstrap, output, &expected, Duration::from_secs(90))?;
    }

    // An agent dies while the applications work through more lines; it comes back later.
    let killed = Instant::now();
    agents[1].kill_hard()?;
    let producing = produce_lines(&agents[0].bootstrap, "lines", FIRST..FIRST + SECOND);
    count_words(FIRST..FIRST + SECOND, &mut expected);
    producing.await?;
    std::thread::sleep(Duration::from_secs(3).saturating_sub(killed.elapsed()));
    agents[1].restart()?;
    for (_, output, guarantee) in APPLICATIONS {
        let took = wait_for_counts(&agents[0].bootstrap, output, &expected, Duration::from_secs(120))?;
        println!("{guarantee}: exact counts {took:?} after the killed agent came back");
    }
    // exactly_once_v2 really ran transactions (at_least_once runs none).
    let mut commits = 0.0;
    for agent in &agents {
        let (_, metrics) = http_get(&agent.http, "/metrics")?;
        commits += metric_value(&metrics, "floe_transactions_ended_total{result=\"commit\"}").unwrap_or_default();
    }
    ensure!(commits > 0.0, "no agent committed a transaction for the exactly_once_v2 application");
    println!("{commits} transactions committed (agents that were not restarted)");
    for app in apps {
        app.stop()?;
    }

    for agent in agents.iter_mut() {
        agent.restart()?;
    }
    for (_, output, _) in APPLICATIONS {
        wait_for_counts(&agents[2].bootstrap, output, &expected, Duration::from_secs(60)).context("after every agent restarted")?;
    }
    cell.pass();
    Ok(())
}

/// A run of the Java transactional driver (`dev.floe.e2e.Transactions`, e2e/java), its events
/// read as they come; Kafka's client log goes to target/transactions.log.
struct TransactionsRun {
    child: Child,
    events: mpsc::Receiver<serde_json::Value>,
    what: String,
}

impl TransactionsRun {
    fn start(arguments: &[&str]) -> Result<Self> {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(floe_e2e::target_directory().join("transactions.log"))?;
        let mut child = java_main("dev.floe.e2e.Transactions", arguments)?
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .context("starting the Java transactional driver")?;
        let stdout = child.stdout.take().expect("piped");
        let (sender, events) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let event = serde_json::from_str(&line).unwrap_or_else(|_| serde_json::json!({ "event": "unparsable", "line": line }));
                if sender.send(event).is_err() {
                    break;
                }
            }
        });
        Ok(Self { child, events, what: arguments.join(" ") })
    }

    /// Waits (at most `timeout`) for the event `name`; the events before it are dropped.
    fn wait_for(&mut self, name: &str, timeout: Duration) -> Result<serde_json::Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(left) {
                Ok(event) if event["event"] == name => return Ok(event),
                Ok(_) => {}
                Err(error) => bail!("no {name} event from `Transactions {}` within {timeout:?}: {error}", self.what),
            }
        }
    }

    /// Every event until the driver exits 0 (at most `timeout`).
    fn finish(mut self, timeout: Duration) -> Result<Vec<serde_json::Value>> {
        let deadline = Instant::now() + timeout;
        let mut events = Vec::new();
        loop {
            match self.events.recv_timeout(Duration::from_millis(200)) {
                Ok(event) => events.push(event),
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
                Err(mpsc::RecvTimeoutError::Timeout) if Instant::now() > deadline => {
                    bail!("`Transactions {}` still running after {timeout:?}; events so far: {events:?}", self.what)
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
            }
        }
        let status = self.child.wait()?;
        ensure!(status.success(), "`Transactions {}` exited with {status} (see target/transactions.log); events: {events:?}", self.what);
        Ok(events)
    }
}

impl Drop for TransactionsRun {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn named<'a>(events: &'a [serde_json::Value], name: &str) -> Vec<&'a serde_json::Value> {
    events.iter().filter(|event| event["event"] == name).collect()
}

fn strings(value: &serde_json::Value) -> Vec<String> {
    value.as_array().into_iter().flatten().filter_map(|item| item.as_str().map(String::from)).collect()
}

/// The values a consumer of `topic` reads from the beginning with `isolation`, in read order.
fn read_values(bootstrap: &str, topic: &str, isolation: &str) -> Result<Vec<String>> {
    let events = TransactionsRun::start(&["consume", bootstrap, topic, isolation, "1500"])?.finish(Duration::from_secs(150))?;
    ensure!(!named(&events, "end").is_empty(), "the consumer did not reach the end of {topic}: {events:?}");
    Ok(named(&events, "record").iter().filter_map(|record| record["value"].as_str().map(String::from)).collect())
}

/// Issue 19, done-when 4: Java transactional producers on a three-agent cluster. Committed records
/// are read exactly once and aborted ones never by read_committed consumers, although an agent is
/// killed and restarted while the transactions run (and read again after every agent restarted);
/// a second producer with the same transactional id aborts the first one's transaction and fences
/// it; a transaction that outlives its timeout is aborted by the coordinator.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn java_transactions_commit_abort_fence_and_time_out_while_an_agent_is_killed() -> Result<()> {
    use floe_e2e::cluster::{Agent, Infrastructure};
    let cell = Cell::open(
        "java",
        "transactions",
        "committed records read once and aborted ones never (read_committed) across an agent kill; a zombie producer fenced; a timed-out transaction aborted",
    );
    let flags = ["--registry-ttl", "3s"];
    let infrastructure = Infrastructure::start()?;
    let mut agents = [
        Agent::start(&infrastructure, "transactions", &flags)?,
        Agent::start(&infrastructure, "transactions", &flags)?,
        Agent::start(&infrastructure, "transactions", &flags)?,
    ];
    let bootstrap = agents.iter().map(|agent| agent.bootstrap.clone()).collect::<Vec<_>>().join(",");
    let admin: AdminClient<DefaultClientContext> = kafka::config(&bootstrap).create()?;
    let topics = [
        NewTopic::new("payments", 6, TopicReplication::Fixed(1)),
        NewTopic::new("fenced", 1, TopicReplication::Fixed(1)),
        NewTopic::new("expired", 1, TopicReplication::Fixed(1)),
    ];
    for result in admin.create_topics(&topics, &AdminOptions::new()).await? {
        if let Err((name, error)) = result {
            bail!("failed to create {name}: {error}");
        }
    }

    // The timeout run sleeps through three timeouts; it overlaps the main run.
    let expiring = TransactionsRun::start(&["timeout", &bootstrap, "expired", "expiring-tx", "2000"])?;
    let producing = TransactionsRun::start(&["produce", &bootstrap, "payments", "payments-tx", "40", "20", "150"])?;
    std::thread::sleep(Duration::from_secs(4));
    agents[1].kill_hard()?;
    std::thread::sleep(Duration::from_secs(3));
    agents[1].restart()?;
    let events = producing.finish(Duration::from_secs(240))?;
    ensure!(named(&events, "in_doubt").is_empty() && named(&events, "fatal").is_empty(), "transactions failed: {events:?}");
    ensure!(!named(&events, "done").is_empty(), "the producer did not finish: {events:?}");
    let committed: Vec<String> = named(&events, "committed").iter().flat_map(|event| strings(&event["values"])).collect();
    let aborted: Vec<String> = named(&events, "aborted").iter().flat_map(|event| strings(&event["values"])).collect();
    ensure!(committed.len() >= 200 && aborted.len() >= 200, "{} committed and {} aborted records", committed.len(), aborted.len());
    let check_committed = |read: Vec<String>, when: &str| -> Result<()> {
        let mut read_sorted = read.clone();
        read_sorted.sort();
        let mut expected = committed.clone();
        expected.sort();
        let leaked: Vec<&String> = read.iter().filter(|value| aborted.contains(value)).take(5).collect();
        ensure!(leaked.is_empty(), "{when}: read_committed returned aborted records, e.g. {leaked:?}");
        ensure!(
            read_sorted == expected,
            "{when}: read_committed returned {} records, expected the {} committed ones exactly once",
            read.len(),
            expected.len()
        );
        Ok(())
    };
    check_committed(read_values(&bootstrap, "payments", "read_committed")?, "after the agent came back")?;
    let uncommitted = read_values(&bootstrap, "payments", "read_uncommitted")?;
    ensure!(uncommitted.iter().any(|value| aborted.contains(value)), "read_uncommitted shows no aborted record: the test proves nothing");
    println!("{} committed and {} aborted records; read_committed hid the aborted ones", committed.len(), aborted.len());

    // A zombie: the new producer's InitProducerId aborts its transaction and fences it.
    let events = TransactionsRun::start(&["fence", &bootstrap, "fenced", "fenced-tx"])?.finish(Duration::from_secs(120))?;
    let fenced = named(&events, "fenced");
    ensure!(fenced.len() == 1, "the zombie was not fenced: {events:?}");
    let error = fenced[0]["error"].as_str().unwrap_or_default();
    ensure!(
        error.contains("ProducerFenced") || error.contains("InvalidProducerEpoch"),
        "the zombie failed with {error}, not a fencing error"
    );
    ensure!(read_values(&bootstrap, "fenced", "read_committed")? == ["fresh-0"], "only the new producer's record is committed");

    let events = expiring.finish(Duration::from_secs(120))?;
    ensure!(named(&events, "aborted_by_coordinator").len() == 1, "the expired transaction was committed: {events:?}");
    ensure!(read_values(&bootstrap, "expired", "read_committed")?.is_empty(), "the expired transaction's record is visible");
    let mut timed_out = 0.0;
    for agent in &agents {
        let (_, metrics) = http_get(&agent.http, "/metrics")?;
        timed_out += metric_value(&metrics, "floe_transactions_timed_out_total").unwrap_or_default();
    }
    ensure!(timed_out >= 1.0, "no agent counted a timeout abort");

    for agent in agents.iter_mut() {
        agent.restart()?;
    }
    let bootstrap = agents.iter().map(|agent| agent.bootstrap.clone()).collect::<Vec<_>>().join(",");
    check_committed(read_values(&bootstrap, "payments", "read_committed")?, "after every agent restarted")?;
    cell.pass();
    Ok(())
}

/// The partitions of one member in a `balanced` event.
fn member_partitions(assignments: &serde_json::Value) -> BTreeMap<String, Vec<i64>> {
    assignments
        .as_object()
        .into_iter()
        .flatten()
        .map(|(member, partitions)| (member.clone(), partitions.as_array().into_iter().flatten().filter_map(|p| p.as_i64()).collect()))
        .collect()
}

/// Issue 19, done-when 6: three Java 4.1.1 consumers with `group.protocol=consumer` (KIP-848, the
/// server-side uniform assignor) split 12 partitions, rebalance incrementally when one leaves and
/// another joins, read every record and commit with their member epochs; the playground restarts
/// and the committed offsets are still the end offsets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn java_consumers_with_the_kip_848_protocol_split_rebalance_and_commit() -> Result<()> {
    let cell = Cell::open(
        "java",
        "kip848",
        "three group.protocol=consumer members split 12 partitions, rebalance when one leaves and one joins, read every record and commit",
    );
    const RECORDS: u64 = 3_000;
    let mut playground = Playground::start(&[])?;
    let admin: AdminClient<DefaultClientContext> = kafka::config(&playground.bootstrap).create()?;
    for result in admin.create_topics(&[NewTopic::new("kip848", 12, TopicReplication::Fixed(1))], &AdminOptions::new()).await? {
        if let Err((name, error)) = result {
            bail!("failed to create {name}: {error}");
        }
    }
    produce_lines(&playground.bootstrap, "kip848", 0..RECORDS).await?;
    let log = std::fs::OpenOptions::new().create(true).append(true).open(floe_e2e::target_directory().join("kip848.log"))?;
    let run = java_main("dev.floe.e2e.NewConsumerGroup", &[&playground.bootstrap, "kip848", "kip848-group", &RECORDS.to_string()])?
        .stderr(log)
        .output()
        .context("running the KIP-848 consumers")?;
    let events: Vec<serde_json::Value> = String::from_utf8_lossy(&run.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or(serde_json::json!({ "line": line })))
        .collect();
    ensure!(run.status.success(), "the KIP-848 consumers failed ({}; see target/kip848.log): {events:?}", run.status);
    let balanced = named(&events, "balanced");
    ensure!(balanced.len() == 3, "expected three balanced phases: {balanced:?}");
    for (phase, members) in [(1, 3), (2, 2), (3, 3)] {
        let assignments = member_partitions(&balanced[phase - 1]["assignments"]);
        let mut all: Vec<i64> = assignments.values().flatten().copied().collect();
        all.sort_unstable();
        ensure!(assignments.len() == members, "phase {phase}: {assignments:?}");
        ensure!(all == (0..12).collect::<Vec<_>>(), "phase {phase}: the members' partitions overlap or miss some: {assignments:?}");
        ensure!(assignments.values().all(|partitions| partitions.len() >= 12 / members), "phase {phase}: unbalanced {assignments:?}");
    }
    let done = named(&events, "done");
    ensure!(done.len() == 1 && done[0]["distinct"] == RECORDS, "not every record was read: {done:?}");
    let offsets = named(&events, "offsets");
    let committed: i64 = offsets
        .first()
        .and_then(|event| event["offsets"].as_object())
        .into_iter()
        .flatten()
        .filter_map(|(_, offset)| offset.as_i64())
        .sum();
    ensure!(committed == RECORDS as i64, "the group committed {committed} records' worth of offsets, expected {RECORDS}: {offsets:?}");
    println!("KIP-848: {} record events for {RECORDS} records; {:?}", done[0]["total"], named(&events, "described"));

    playground.restart()?;
    let consumer: BaseConsumer = kafka::config(&playground.bootstrap).set("group.id", "kip848-group").create()?;
    let mut partitions = TopicPartitionList::new();
    for partition in 0..12 {
        partitions.add_partition("kip848", partition);
    }
    let stored = consumer.committed_offsets(partitions, Duration::from_secs(10))?;
    let after_restart: i64 = stored
        .elements()
        .iter()
        .filter_map(|element| match element.offset() {
            Offset::Offset(offset) => Some(offset),
            _ => None,
        })
        .sum();
    ensure!(after_restart == RECORDS as i64, "after the restart the group's offsets add up to {after_restart}");
    cell.pass();
    Ok(())
}

/// Safety must not rest on clocks: a transaction's timeout is measured by its coordinator's own
/// monotonic clock, never by comparing the start another agent recorded with its wall clock. A
/// Java producer's transaction opens on an agent with a correct clock, which is killed while the
/// transaction is open; the surviving agent, whose clock is 15 minutes ahead, takes it over. The
/// transaction, held for 12 s of its 60 s timeout, commits; the producer is never fenced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_coordinator_whose_clock_is_fifteen_minutes_ahead_aborts_no_transaction_early() -> Result<()> {
    use floe_agent::cluster::{placement, NodeInfo};
    use floe_e2e::cluster::{Agent, AgentOptions, Infrastructure};
    use floe_e2e::faults::clock;
    let infrastructure = Infrastructure::start()?;
    // A file bucket: an S3 server refuses requests signed 15 minutes off, as AWS does.
    let bucket = infrastructure.directory.path().join("bucket-skewed-transactions");
    std::fs::create_dir_all(&bucket)?;
    let options =
        |environment| AgentOptions { object_store: Some(format!("file://{}", bucket.display())), environment, ..AgentOptions::default() };
    let flags = ["--registry-ttl", "3s"];
    let mut correct = Agent::start_with(&infrastructure, "skewed-transactions", &flags, options(Vec::new()))?;
    let skewed = Agent::start_with(&infrastructure, "skewed-transactions", &flags, options(clock::skewed_environment("+15m")?))?;
    let admin: AdminClient<DefaultClientContext> = kafka::config(&correct.bootstrap).create()?;
    for result in admin.create_topics(&[NewTopic::new("skewed", 3, TopicReplication::Fixed(1))], &AdminOptions::new()).await? {
        if let Err((name, error)) = result {
            bail!("failed to create {name}: {error}");
        }
    }
    // A transactional id the correct agent coordinates while both are live.
    let nodes = [correct.node_id, skewed.node_id].map(|node_id| NodeInfo { node_id, host: String::new(), port: 0, rack: None });
    let transactional_id = (0..100)
        .map(|index| format!("skewed-tx-{index}"))
        .find(|id| placement::group_coordinator(&nodes, id).is_some_and(|node| node.node_id == correct.node_id))
        .context("no transactional id lands on the correct agent")?;
    let bootstrap = format!("{},{}", correct.bootstrap, skewed.bootstrap);
    // The transaction opens on the correct agent (it records the start) and stays open for 12 s
    // of its 60 s timeout; its coordinator dies meanwhile and the skewed agent takes it over.
    let mut holding = TransactionsRun::start(&["timeout", &bootstrap, "skewed", &transactional_id, "60000", "12000"])?;
    holding.wait_for("sent", Duration::from_secs(60))?;
    correct.kill_hard()?;
    let events = holding.finish(Duration::from_secs(120))?;
    ensure!(named(&events, "committed").len() == 1, "the transaction was aborted although it stayed within its timeout: {events:?}");
    // More transactions through the skewed agent alone.
    let events = TransactionsRun::start(&["produce", &skewed.bootstrap, "skewed", &transactional_id, "4", "10"])?
        .finish(Duration::from_secs(120))?;
    ensure!(named(&events, "committed").len() == 2 && named(&events, "fatal").is_empty(), "later transactions: {events:?}");
    ensure!(clock::some_object_written_with_skew(&bucket, 900)?, "no object named by the skewed clock: libfaketime did not take effect");
    let (_, metrics) = http_get(&skewed.http, "/metrics")?;
    ensure!(
        metric_value(&metrics, "floe_transactions_ended_total{result=\"commit\"}").unwrap_or_default() > 0.0,
        "the skewed agent ended no transaction: the test proves nothing"
    );
    ensure!(
        metric_value(&metrics, "floe_transactions_timed_out_total").unwrap_or_default() == 0.0,
        "the skewed agent aborted a transaction"
    );
    Ok(())
}
