#!/usr/bin/env node
'use strict'
/*
 * A verifiable-client adapter for kafkajs 2.2.4 (the contract is e2e/README.md).
 *
 *   node driver.js roundtrip   --bootstrap H:P --topic T [--partitions 12] --records N
 *   node driver.js admin       --bootstrap H:P --topic T
 *   node driver.js idempotence --bootstrap H:P --topic T [--partitions 12] --records N
 *   node driver.js denied      --bootstrap H:P --topic T --group G --new-topic N
 *   node driver.js transactions --bootstrap H:P --topic T [--partitions 12] --records N --transactional-id X
 *
 * Every mode also takes --tls-ca-file CA.pem (TLS, trusting that CA) and --sasl-mechanism
 * PLAIN|SCRAM-SHA-256|SCRAM-SHA-512 with --sasl-user and --sasl-password.
 *
 * It reports what kafkajs did as JSON events on stdout and checks nothing about the data; the Rust
 * suites (kafkajs.rs, sasl.rs, acls.rs) check the events with floe_e2e::verifiable. It exits 0 after
 * shutdown_complete, 1 when it cannot go on ("FAIL kafkajs <mode>: ..." on stderr), 2 on bad
 * usage. KAFKAJS_LOG=info (or debug, warn) shows the client's own log on stderr. See README.md.
 */

const { Kafka, logLevel, Partitioners, AssignerProtocol, ConfigResourceTypes, KafkaJSProtocolError } = require('kafkajs')
const { registerCodecs, CODECS } = require('./codecs')

const CLIENT_ID = 'floe-e2e-kafkajs'
const CLIENT_NAME = 'kafkajs' // the h-client header and startup_complete's client
const CONSUME_DEADLINE_MS = 150000
const DRAIN_MS = 1500
const DENIED_STEP_MS = 15000
const DENIED_CLOSE_MS = 2000
const TRANSACTION_SIZE = 10 // records per transaction: transaction k holds [10k, 10k+10)
const TRANSACTION_READ_MS = 60000

// ------------------------------------------------------------------------------------------------
// Events: one JSON object per line on stdout (console.log is stdout; logs use console.error).
// ------------------------------------------------------------------------------------------------

const out = []
function emit(name, fields = {}) {
  out.push(JSON.stringify({ name, ...fields }))
  if (out.length >= 1000) flush()
}
function flush() {
  if (out.length) process.stdout.write(out.join('\n') + '\n')
  out.length = 0
}

const hexOrNull = bytes => (bytes === null || bytes === undefined ? null : Buffer.from(bytes).toString('hex'))

function emitConsumed(topic, partition, m) {
  const context = m.batchContext || {}
  const headers = Object.entries(m.headers || {}).map(([key, value]) => ({ key, value: hexOrNull(value) }))
  const event = { topic, partition, offset: Number(m.offset), key: hexOrNull(m.key), value: hexOrNull(m.value), headers }
  if (context.producerId !== undefined) {
    event.producer_id = Number(context.producerId)
    event.producer_epoch = context.producerEpoch
  }
  emit('record_consumed', event)
}

/** Runs call(), reports it as an admin_result and returns its answer (undefined on error). */
async function report(operation, resource, call, result = () => ({})) {
  let answer
  try {
    answer = await call()
  } catch (error) {
    const types = [error.type, ...(error.errors || []).map(e => e.type), ...(error.groups || []).map(g => g.error && g.error.type)]
    emit('admin_result', { operation, resource, error: types.find(Boolean) || `${error.name}: ${error.message}`, result: {} })
    return undefined
  }
  emit('admin_result', { operation, resource, error: null, result: await result(answer) })
  return answer
}

/** Polls check() until it returns true or the deadline passes (what it saw is reported after). */
async function waitFor(timeoutMs, check) {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    try {
      if (await check()) return
    } catch (error) {
      // Reported by the step that follows.
    }
    await new Promise(resolve => setTimeout(resolve, 100))
  }
}

// ------------------------------------------------------------------------------------------------
// Record i of the shared format; floe_e2e::records (e2e/src/lib.rs) is the one the checks use.
// ------------------------------------------------------------------------------------------------

const recordKey = i => Buffer.from(`key-${String(i).padStart(8, '0')}`)

function recordValue(i) {
  const prefix = Buffer.from(`value-${i}-`)
  const tail = Buffer.alloc(i % 300)
  for (let j = 0; j < tail.length; j++) tail[j] = (i * 31 + j) % 251
  return Buffer.concat([prefix, tail])
}

const message = i => ({ key: recordKey(i), value: recordValue(i), headers: { 'h-index': String(i), 'h-client': CLIENT_NAME } })

// ------------------------------------------------------------------------------------------------
// Clients
// ------------------------------------------------------------------------------------------------

let security = {}

function securityOf(options) {
  const settings = {}
  if (options['tls-ca-file']) settings.ssl = { ca: [require('fs').readFileSync(options['tls-ca-file'], 'utf8')] }
  if (options['sasl-mechanism']) {
    settings.sasl = {
      mechanism: options['sasl-mechanism'].toLowerCase(),
      username: options['sasl-user'],
      password: options['sasl-password'],
    }
  }
  return settings
}

const shownLogLevel = () => {
  const level = { debug: logLevel.DEBUG, info: logLevel.INFO, warn: logLevel.WARN }[process.env.KAFKAJS_LOG]
  return level === undefined ? logLevel.ERROR : level
}

/** kafkajs's log on stderr: its default logger writes to stdout, which carries the events. */
const stderrLogger = () => ({ namespace, label, log }) =>
  console.error(JSON.stringify({ level: label, ...log, message: `[${namespace}] ${log.message}` }))

function kafka(bootstrap, settings = {}) {
  return new Kafka({
    clientId: CLIENT_ID,
    brokers: [bootstrap],
    logLevel: shownLogLevel(),
    logCreator: stderrLogger,
    retry: { retries: 8 },
    ...security,
    ...settings,
  })
}

async function createTopic(admin, topic, numPartitions) {
  const created = await admin.createTopics({ topics: [{ topic, numPartitions, replicationFactor: 1 }], waitForLeaders: true })
  if (created !== true) throw new Error(`createTopics(${topic}) answered ${created}: the topic already exists`)
}

/** Where kafkajs's default (Java-compatible murmur2) partitioner sends a keyed record. */
function partitionOf(key, topic, partitions) {
  const partitionMetadata = Array.from({ length: partitions }, (_, p) => ({ partitionId: p, leader: 0 }))
  return Partitioners.DefaultPartitioner()({ topic, partitionMetadata, message: { key } })
}

/**
 * Sends records [from, to) in chunks, one send at a time, and reports where each landed: a send's
 * answer holds one base offset per partition, and records of one partition take consecutive
 * offsets from it in send order. A failed send reports each of its records as an error. Returns
 * how many records were reported as errors. `producer` is a producer or a transaction.
 */
async function sendRange(producer, producerName, topic, partitions, from, to, compression, chunk) {
  let failed = 0
  for (let start = from; start < to; start += chunk) {
    const end = Math.min(to, start + chunk)
    const messages = []
    for (let i = start; i < end; i++) messages.push(message(i))
    let answers
    try {
      answers = await producer.send({ topic, acks: -1, compression, messages })
    } catch (error) {
      for (let i = start; i < end; i++) emit('producer_send_error', { topic, index: i, error: `${error.name}: ${error.message}` })
      failed += end - start
      continue
    }
    const base = new Map(answers.map(a => [a.partition, Number(a.baseOffset)]))
    const next = new Map()
    for (let i = start; i < end; i++) {
      const partition = partitionOf(messages[i - start].key, topic, partitions)
      if (!base.has(partition)) {
        emit('producer_send_error', { topic, index: i, error: `the send's answer has no partition ${partition}` })
        failed++
        continue
      }
      const offset = base.get(partition) + (next.get(partition) || 0)
      next.set(partition, (next.get(partition) || 0) + 1)
      emit('producer_send_success', { topic, partition, offset, index: i, producer: producerName })
    }
  }
  return failed
}

/**
 * A group member that reports assignments and every record; returns it and its state: the count
 * of reads, the offset after the last record read per partition (`next`), the position per
 * partition (`position`: one past the last offset of every batch it went through, including batches
 * left empty by filtering, i.e. aborted records and transaction markers), and when the last record
 * came (`lastRecordAt`). `settings` are more options of kafkajs's consumer.
 */
async function reportingConsumer(client, groupId, topic, onBatch = () => {}, settings = {}) {
  const consumer = client.consumer({ groupId, maxWaitTimeInMs: 500, ...settings })
  consumer.on(consumer.events.GROUP_JOIN, ({ payload }) => {
    for (const [assigned, partitions] of Object.entries(payload.memberAssignment)) {
      emit('partitions_assigned', { topic: assigned, partitions: [...partitions].sort((a, b) => a - b) })
    }
  })
  const state = { read: 0, next: new Map(), position: new Map(), lastRecordAt: Date.now() }
  const advance = (partition, offset) => {
    if (!(state.position.get(partition) >= offset)) state.position.set(partition, offset)
  }
  // kafkajs emits END_BATCH_PROCESS for every batch it resolved, also one whose records were all
  // filtered out (aborted, control), which never reaches eachBatch.
  consumer.on(consumer.events.END_BATCH_PROCESS, ({ payload }) => {
    if (payload.topic === topic && payload.lastOffset !== null) advance(payload.partition, Number(payload.lastOffset) + 1)
  })
  await consumer.connect()
  await consumer.subscribe({ topic, fromBeginning: true })
  await consumer.run({
    autoCommit: false,
    eachBatch: async ({ batch }) => {
      for (const m of batch.messages) {
        state.read++
        state.next.set(batch.partition, Number(m.offset) + 1)
        advance(batch.partition, Number(m.offset) + 1)
        state.lastRecordAt = Date.now()
        emitConsumed(batch.topic, batch.partition, m)
      }
      await onBatch(batch, consumer)
    },
  })
  return { consumer, state }
}

// ------------------------------------------------------------------------------------------------
// Modes
// ------------------------------------------------------------------------------------------------

async function roundtrip({ bootstrap, topic, partitions, records: n }) {
  const started = Date.now()
  const client = kafka(bootstrap)
  const admin = client.admin()
  await admin.connect()
  try {
    await createTopic(admin, topic, partitions)
    // Five producers in parallel, one per codec, each sending a contiguous fifth of the range.
    await Promise.all(
      CODECS.map(async ([name, compression], c) => {
        const producer = client.producer({ createPartitioner: Partitioners.DefaultPartitioner })
        await producer.connect()
        try {
          const from = Math.floor((c * n) / CODECS.length)
          const to = Math.floor(((c + 1) * n) / CODECS.length)
          await sendRange(producer, name, topic, partitions, from, to, compression, 2000)
        } finally {
          await producer.disconnect()
        }
      })
    )
    console.error(`produced ${n} records (${CODECS.map(([name]) => name).join('/')}) in ${(Date.now() - started) / 1000} s`)

    const groupId = `${topic}-group`
    const { consumer, state } = await reportingConsumer(client, groupId, topic)
    try {
      await waitFor(CONSUME_DEADLINE_MS, () => state.read >= n)
      // Keep consuming a little longer so duplicates or extra records show.
      await new Promise(resolve => setTimeout(resolve, DRAIN_MS))
      await consumer.commitOffsets([...state.next].map(([partition, offset]) => ({ topic, partition, offset: String(offset) })))
    } finally {
      await consumer.disconnect()
    }
    const [committed] = await admin.fetchOffsets({ groupId, topics: [topic] })
    const offsets = committed.partitions
      .filter(p => Number(p.offset) >= 0)
      .map(p => ({ partition: p.partition, offset: Number(p.offset) }))
    emit('offsets_committed', { group: groupId, topic, offsets })
    console.error(`read ${state.read} records in group ${groupId} and committed, ${(Date.now() - started) / 1000} s in all`)
  } finally {
    await admin.disconnect()
  }
}

async function idempotence({ bootstrap, topic, partitions, records: n }) {
  const client = kafka(bootstrap)
  const admin = client.admin()
  await admin.connect()
  try {
    await createTopic(admin, topic, partitions)
    // kafkajs requires maxInFlightRequests 1 (and acks -1) for an idempotent producer.
    const producer = client.producer({ idempotent: true, maxInFlightRequests: 1, createPartitioner: Partitioners.DefaultPartitioner })
    await producer.connect()
    try {
      await sendRange(producer, 'idempotent', topic, partitions, 0, n, CODECS[0][1], 1000)
    } finally {
      await producer.disconnect()
    }
    const ends = await admin.fetchTopicOffsets(topic)
    const total = ends.reduce((sum, { high }) => sum + Number(high), 0)
    const { consumer, state } = await reportingConsumer(client, `${topic}-reader`, topic)
    try {
      await waitFor(CONSUME_DEADLINE_MS, () => state.read >= total)
      await new Promise(resolve => setTimeout(resolve, DRAIN_MS))
    } finally {
      await consumer.disconnect()
    }
    console.error(`read ${state.read} records of the ${total} the high watermarks hold`)
  } finally {
    await admin.disconnect()
  }
}

/**
 * One transactional producer (idempotent, maxInFlightRequests 1, transaction timeout 60 s) sends
 * records [0, N) in transactions of 10, committing the even ones and aborting the odd ones (and
 * any with a failed send), each end an admin_result; then a group member that reads committed
 * records only (readUncommitted: false; kafkajs has no consumer without a group) reads T from the
 * beginning until each partition's position reached the end offset ListOffsets answers for
 * read_committed (the last stable offset) and no record came for 1.5 s, or 60 s passed.
 */
async function transactions({ bootstrap, topic, partitions, records: n, 'transactional-id': transactionalId }) {
  const client = kafka(bootstrap)
  const admin = client.admin()
  await admin.connect()
  try {
    await createTopic(admin, topic, partitions)
    const producer = client.producer({
      transactionalId,
      idempotent: true,
      maxInFlightRequests: 1,
      transactionTimeout: 60000,
      createPartitioner: Partitioners.DefaultPartitioner,
    })
    await producer.connect()
    try {
      for (let k = 0, first = 0; first < n; k++, first += TRANSACTION_SIZE) {
        const count = Math.min(TRANSACTION_SIZE, n - first)
        // The first transaction() initialises the transactional producer id (InitProducerId with
        // the transactional id); kafkajs has no separate call for it.
        const txn = await producer.transaction()
        const failed = await sendRange(txn, 'transactional', topic, partitions, first, first + count, CODECS[0][1], count)
        const commit = k % 2 === 0 && failed === 0
        const operation = commit ? 'commit_transaction' : 'abort_transaction'
        let error = null
        try {
          await (commit ? txn.commit() : txn.abort())
        } catch (e) {
          error = transactionError(e)
          console.error(`transaction ${k}: ${operation}: ${e.stack}`)
        }
        emit('admin_result', { operation, resource: String(k), error, result: { first, count } })
      }
    } finally {
      await producer.disconnect()
    }

    // kafkajs's admin sends ListOffsets (v2+) with its default isolation level READ_COMMITTED, so
    // `high` is the last stable offset.
    const ends = await admin.fetchTopicOffsets(topic)
    const end = new Map(ends.map(({ partition, high }) => [partition, Number(high)]))
    const { consumer, state } = await reportingConsumer(client, `${topic}-txn-reader`, topic, undefined, { readUncommitted: false })
    const reached = () => [...end].every(([partition, offset]) => (state.position.get(partition) || 0) >= offset)
    try {
      await waitFor(TRANSACTION_READ_MS, () => reached() && Date.now() - state.lastRecordAt >= DRAIN_MS)
    } finally {
      await consumer.disconnect()
    }
    console.error(
      `read ${state.read} committed records; positions ${JSON.stringify([...state.position])}, last stable offsets ${JSON.stringify([...end])}`
    )
  } finally {
    await admin.disconnect()
  }
}

/**
 * A transaction end's `error`, as the denied mode names it, except that a code kafkajs 2.2.4 does
 * not know (e.g. 90 PRODUCER_FENCED) is no Kafka error name: kafkajs gives it the type
 * KAFKAJS_UNKNOWN_ERROR_CODE and code -99, and only its message ("Unknown error code 90") keeps
 * the code, so it is reported as CLIENT_ERROR with that message.
 */
function transactionError(error) {
  const found = protocolErrorOf(error)
  if (found && found.type === 'KAFKAJS_UNKNOWN_ERROR_CODE') return `CLIENT_ERROR: ${found.message}`
  return deniedError(error)
}

// Kafka's ConfigSource names by number (kafkajs gives the number only).
const CONFIG_SOURCES = [
  'UNKNOWN',
  'DYNAMIC_TOPIC_CONFIG',
  'DYNAMIC_BROKER_CONFIG',
  'DYNAMIC_DEFAULT_BROKER_CONFIG',
  'STATIC_BROKER_CONFIG',
  'DEFAULT_CONFIG',
  'DYNAMIC_BROKER_LOGGER_CONFIG',
]

async function reportConfigs(admin, topic) {
  await report(
    'describe_configs',
    topic,
    () => admin.describeConfigs({ resources: [{ type: ConfigResourceTypes.TOPIC, name: topic }], includeSynonyms: false }),
    ({ resources }) => ({
      configs: Object.fromEntries(
        resources[0].configEntries.map(e => [e.configName, { value: e.configValue, source: CONFIG_SOURCES[e.configSource] || String(e.configSource) }])
      ),
    })
  )
}

async function reportPartitions(admin, topic, want) {
  const partitions = async () => (await admin.fetchTopicMetadata({ topics: [topic] })).topics[0].partitions
  await waitFor(30000, async () => (await partitions()).length === want)
  await report('metadata', topic, partitions, found => {
    const sorted = [...found].sort((a, b) => a.partitionId - b.partitionId)
    return { partitions: sorted.map(p => p.partitionId), leaders: sorted.map(p => p.leader) }
  })
}

async function adminMode({ bootstrap, topic }) {
  const client = kafka(bootstrap)
  const admin = client.admin()
  await admin.connect()
  try {
    // createTopics answers false, not an error, when the topic exists (TOPIC_ALREADY_EXISTS).
    const create = async configEntries => {
      const created = await admin.createTopics({ topics: [{ topic, numPartitions: 3, replicationFactor: 1, configEntries }], waitForLeaders: true })
      if (created !== true) throw Object.assign(new Error('createTopics answered false'), { type: 'TOPIC_ALREADY_EXISTS' })
    }
    await report('create_topics', topic, () => create([{ name: 'retention.ms', value: '3600000' }]))
    await report('create_topics', topic, () => create([]))
    await reportPartitions(admin, topic, 3)
    await report('create_partitions', topic, () => admin.createPartitions({ topicPartitions: [{ topic, count: 5 }] }), () => ({ total: 5 }))
    await reportPartitions(admin, topic, 5)
    await report('create_partitions', topic, () => admin.createPartitions({ topicPartitions: [{ topic, count: 3 }] }), () => ({ total: 3 }))

    // kafkajs alters with the legacy AlterConfigs: the given set replaces every set config.
    const alter = configEntries => () =>
      admin.alterConfigs({ validateOnly: false, resources: [{ type: ConfigResourceTypes.TOPIC, name: topic, configEntries }] })
    await reportConfigs(admin, topic)
    await report('alter_configs', topic, alter([{ name: 'retention.ms', value: '7200000' }, { name: 'retention.bytes', value: '1048576' }]), () => ({ op: 'replace' }))
    await reportConfigs(admin, topic)
    await report('alter_configs', topic, alter([{ name: 'retention.ms', value: '7200000' }]), () => ({ op: 'replace' }))
    await reportConfigs(admin, topic)

    await groupAdmin(client, admin, topic)

    await report('delete_topics', topic, () => admin.deleteTopics({ topics: [topic] }))
    await waitFor(30000, async () => !(await admin.listTopics()).includes(topic))
    await report('list_topics', topic, () => admin.listTopics(), topics => ({ listed: topics.includes(topic) }))
  } finally {
    await admin.disconnect()
  }
}

async function groupAdmin(client, admin, topic) {
  const groupId = `${topic}-admin-group`
  const records = 50
  const producer = client.producer({ createPartitioner: Partitioners.DefaultPartitioner })
  await producer.connect()
  await sendRange(producer, 'admin', topic, 5, 0, records, CODECS[0][1], records)
  await producer.disconnect()

  let commitError = null
  const commit = async (batch, consumer) => {
    try {
      await consumer.commitOffsets([{ topic, partition: batch.partition, offset: String(Number(batch.lastOffset()) + 1) }])
    } catch (error) {
      commitError = commitError || error
    }
  }
  const { consumer, state } = await reportingConsumer(client, groupId, topic, commit)
  let connected = true
  try {
    await waitFor(60000, () => state.read >= records)
    const committedSum = async () => {
      const [{ partitions }] = await admin.fetchOffsets({ groupId, topics: [topic] })
      return partitions.reduce((sum, p) => sum + Math.max(0, Number(p.offset)), 0)
    }
    await waitFor(30000, async () => (await committedSum()) >= records)
    await report('commit', groupId, async () => { if (commitError) throw commitError }, () => ({ read: state.read }))

    // While the member is alive. kafkajs's listGroups gives no state.
    await reportListed(admin, groupId)
    await reportDescribed(admin, groupId, topic)
    await report('offset_fetch', groupId, () => admin.fetchOffsets({ groupId, topics: [topic] }), ([{ partitions }]) => ({
      offsets: Object.fromEntries(partitions.map(p => [String(p.partition), Number(p.offset)])),
    }))
    await report('list_offsets', topic, () => admin.fetchTopicOffsets(topic), ends => ({
      offsets: Object.fromEntries(ends.map(e => [String(e.partition), Number(e.high)])),
    }))
    await report('delete_groups', groupId, () => admin.deleteGroups([groupId]))
    await consumer.disconnect()
    connected = false
  } finally {
    if (connected) await consumer.disconnect()
  }

  // Once the member has left.
  await waitFor(30000, async () => (await admin.describeGroups([groupId])).groups[0].state === 'Empty')
  await reportDescribed(admin, groupId, topic)
  await report('delete_groups', groupId, () => admin.deleteGroups([groupId]))
  await report('delete_groups', groupId, () => admin.deleteGroups([groupId]))
  await reportListed(admin, groupId)
}

async function reportListed(admin, groupId) {
  await report('list_groups', groupId, () => admin.listGroups(), ({ groups }) => {
    const listed = groups.find(g => g.groupId === groupId)
    return { listed: Boolean(listed), state: null, protocol_type: listed ? listed.protocolType : '' }
  })
}

async function reportDescribed(admin, groupId, topic) {
  await report('describe_groups', groupId, () => admin.describeGroups([groupId]), ({ groups: [group] }) => ({
    state: group.state,
    protocol_type: group.protocolType,
    members: group.members.map(member => {
      const assignment = AssignerProtocol.MemberAssignment.decode(member.memberAssignment)
      const partitions = [...((assignment && assignment.assignment[topic]) || [])].sort((a, b) => a - b)
      return { client_id: member.clientId, partitions }
    }),
  }))
}

// ------------------------------------------------------------------------------------------------
// denied: each call of a user without ACLs, reported with the Kafka error name it got.
// ------------------------------------------------------------------------------------------------

// Few and quick retries: an authorization error is not retriable, and every step has 15 s.
const DENIED_RETRY = { retries: 2, initialRetryTime: 100, maxRetryTime: 1000 }

/**
 * The Kafka error name (a KafkaJSProtocolError's `type`, e.g. TOPIC_AUTHORIZATION_FAILED) an error
 * of kafkajs carries, looking through its wrappers: the retrier's KafkaJSNonRetriableError and
 * KafkaJSNumberOfRetriesExceeded (`cause`), KafkaJSAggregateError (`errors`, e.g. CreateTopics'
 * per-topic KafkaJSCreateTopicError). Undefined when it carries none.
 */
function kafkaErrorName(error) {
  const found = protocolErrorOf(error)
  return found && found.type
}

/** The KafkaJSProtocolError (with a `type`) an error of kafkajs carries, as kafkaErrorName looks. */
function protocolErrorOf(error, seen = new Set()) {
  if (!error || typeof error !== 'object' || seen.has(error)) return undefined
  seen.add(error)
  if (error instanceof KafkaJSProtocolError && typeof error.type === 'string') return error
  for (const inner of [error.cause, ...(Array.isArray(error.errors) ? error.errors : [])]) {
    const found = protocolErrorOf(inner, seen)
    if (found) return found
  }
  return undefined
}

/**
 * kafkajs's coordinator lookup (Cluster.findGroupCoordinator, which every group call goes through)
 * drops the error FindCoordinator answered and throws KafkaJSGroupCoordinatorNotFound, which has no
 * code; the dropped KafkaJSProtocolError is handed only to the client's logger, at debug level, with
 * the group id. The denied mode's client logs at debug level into this logger, which keeps those
 * error objects by group (and shows on stderr what KAFKAJS_LOG asks for).
 */
const loggedGroupErrors = new Map()
const keepingGroupErrors = () => {
  const shown = shownLogLevel()
  return ({ namespace, level, label, log }) => {
    if (log.error instanceof KafkaJSProtocolError && typeof log.groupId === 'string') loggedGroupErrors.set(log.groupId, log.error)
    if (level <= shown) console.error(JSON.stringify({ level: label, ...log, message: `[${namespace}] ${log.message}` }))
  }
}

/** The step's `error`: the Kafka error name, else what kafkajs said (no Kafka code). */
function deniedError(error, group) {
  const name = kafkaErrorName(error)
  if (name) return name
  if (error && error.name === 'KafkaJSGroupCoordinatorNotFound' && group !== undefined) {
    const logged = kafkaErrorName(loggedGroupErrors.get(group))
    if (logged) return logged
  }
  return `CLIENT_ERROR: ${(error && error.name) || 'Error'}: ${(error && error.message) || error}`
}

/**
 * Runs one step, bounded to DENIED_STEP_MS, and reports it as an admin_result. call(step) resolves
 * on success; step.open(c) registers a kafkajs object to disconnect when the step ends (given
 * DENIED_CLOSE_MS; main's exit ends what is left), step.over tells a polling call to stop.
 */
async function deniedStep(operation, resource, call, group) {
  const step = { opened: [], over: false, open: c => (step.opened.push(c), c) }
  if (group !== undefined) loggedGroupErrors.delete(group)
  let timer
  const timedOut = new Promise(resolve => (timer = setTimeout(resolve, DENIED_STEP_MS, 'TIMED_OUT')))
  const error = await Promise.race([call(step).then(() => null, e => deniedError(e, group)), timedOut])
  clearTimeout(timer)
  step.over = true
  // A call that timed out may hold a request kafkajs waits for before it disconnects: wait a little.
  const closed = Promise.all(step.opened.reverse().map(c => c.disconnect().catch(e => console.error(`disconnect: ${e.message}`))))
  await Promise.race([closed, new Promise(resolve => setTimeout(resolve, DENIED_CLOSE_MS).unref())])
  emit('admin_result', { operation, resource, error, result: {} })
}

/**
 * kafkajs's Cluster (brokers, metadata, the protocol's requests) with the client's settings: kafkajs
 * has no consumer without a group (no assign) and no commit outside a running group member (its
 * consumer.commitOffsets needs consumer.run, admin.setOffsets runs a consumer that joins the group),
 * so the fetch and commit_offsets steps send their requests through it, as its consumer does.
 */
function clusterOf(client) {
  const create = Object.getOwnPropertySymbols(client).find(symbol => symbol.description === 'private:Kafka:createCluster')
  if (!create) throw new Error('this kafkajs has no private:Kafka:createCluster')
  return client[create]({})
}

const escapeRegExp = text => text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')

async function denied({ bootstrap, topic, group, 'new-topic': newTopic }) {
  const client = kafka(bootstrap, { retry: DENIED_RETRY, logLevel: logLevel.DEBUG, logCreator: keepingGroupErrors })

  // Metadata for T, then Produce to its leader.
  await deniedStep('produce', topic, async step => {
    const producer = step.open(client.producer({ createPartitioner: Partitioners.DefaultPartitioner, retry: DENIED_RETRY }))
    await producer.connect()
    await producer.send({ topic, acks: -1, messages: [{ key: 'k', value: 'v', partition: 0 }] })
  })

  // Metadata for T, then Fetch from its leader until records (or an error) come back.
  await deniedStep('fetch', topic, async step => {
    const cluster = step.open(clusterOf(client))
    await cluster.connect()
    await cluster.addTargetTopic(topic)
    const [nodeId] = Object.keys(cluster.findLeaderForPartitions(topic, [0]))
    if (nodeId === undefined) throw new Error(`the metadata has no leader for ${topic} partition 0`)
    const broker = await cluster.findBroker({ nodeId })
    const partitions = [{ partition: 0, fetchOffset: '0', maxBytes: 1048576 }]
    while (!step.over) {
      const { responses } = await broker.fetch({ maxWaitTime: 500, minBytes: 1, maxBytes: 1048576, topics: [{ topic, partitions }] })
      if (responses.some(r => r.partitions.some(p => p.messages.length > 0))) return
    }
  })

  // kafkajs's subscribe by name asks for T's metadata at once and fails there for a user who may not
  // describe T, before the group is ever contacted (Java's subscribe sends nothing: its poll looks
  // the coordinator up first). A pattern that matches T alone is subscribed without that check (T is
  // not listed to such a user, so nothing matches), and run() goes on to FindCoordinator and
  // JoinGroup for G. Success is the member's first assignment.
  await deniedStep(
    'join_group',
    group,
    async step => {
      const consumer = step.open(
        client.consumer({ groupId: group, maxWaitTimeInMs: 500, retry: { ...DENIED_RETRY, restartOnFailure: async () => false } })
      )
      const outcome = new Promise((resolve, reject) => {
        consumer.on(consumer.events.GROUP_JOIN, () => resolve())
        consumer.on(consumer.events.CRASH, ({ payload }) => reject(payload.error))
      })
      await consumer.connect()
      await consumer.subscribe({ topics: [new RegExp(`^${escapeRegExp(topic)}$`)], fromBeginning: true })
      await consumer.run({ autoCommit: false, eachBatch: async () => {} })
      await outcome
    },
    group
  )

  // FindCoordinator for G, then OffsetCommit as a standalone member (generation -1, no member id).
  await deniedStep(
    'commit_offsets',
    group,
    async step => {
      const cluster = step.open(clusterOf(client))
      await cluster.connect()
      const coordinator = await cluster.findGroupCoordinator({ groupId: group })
      await coordinator.offsetCommit({
        groupId: group,
        groupGenerationId: -1,
        memberId: '',
        topics: [{ topic, partitions: [{ partition: 0, offset: '0' }] }],
      })
    },
    group
  )

  // createTopics answers false, not an error, when the topic exists (TOPIC_ALREADY_EXISTS).
  await deniedStep('create_topics', newTopic, async step => {
    const admin = step.open(client.admin({ retry: DENIED_RETRY }))
    await admin.connect()
    const created = await admin.createTopics({ topics: [{ topic: newTopic, numPartitions: 1 }], waitForLeaders: true })
    if (created !== true) {
      throw new KafkaJSProtocolError({ type: 'TOPIC_ALREADY_EXISTS', code: 36, retriable: false, message: 'createTopics answered false' })
    }
  })

  // kafkajs has AlterConfigs only (no IncrementalAlterConfigs).
  await deniedStep('alter_configs', topic, async step => {
    const admin = step.open(client.admin({ retry: DENIED_RETRY }))
    await admin.connect()
    await admin.alterConfigs({
      validateOnly: false,
      resources: [{ type: ConfigResourceTypes.TOPIC, name: topic, configEntries: [{ name: 'retention.ms', value: '1000' }] }],
    })
  })
}

// ------------------------------------------------------------------------------------------------

function parseArguments(argv) {
  const [mode, ...rest] = argv
  const options = { partitions: 12, records: 10000 }
  for (let k = 0; k < rest.length; k += 2) {
    const name = rest[k]
    const value = rest[k + 1]
    if (!name.startsWith('--') || value === undefined) throw new RangeError(`bad argument ${name}`)
    options[name.slice(2)] = ['partitions', 'records'].includes(name.slice(2)) ? Number(value) : value
  }
  if (!options.bootstrap || !options.topic || !(options.partitions >= 1) || !(options.records >= 0)) {
    throw new RangeError('--bootstrap and --topic are required; --partitions >= 1; --records >= 0')
  }
  if (mode === 'denied' && (!options.group || !options['new-topic'])) throw new RangeError('denied needs --group and --new-topic')
  if (mode === 'transactions' && !options['transactional-id']) throw new RangeError('transactions needs --transactional-id')
  return { mode, options }
}

async function main() {
  let mode = process.argv[2] || ''
  let options
  try {
    ;({ mode, options } = parseArguments(process.argv.slice(2)))
  } catch (error) {
    console.error(`usage error: ${error.message}\nusage: node driver.js roundtrip|admin|idempotence|denied|transactions --bootstrap H:P --topic T [--partitions P] [--records N] [--group G --new-topic N] [--transactional-id X]`)
    return 2
  }
  security = securityOf(options)
  const modes = { roundtrip, admin: adminMode, idempotence, denied, transactions }
  if (!modes[mode]) {
    console.error(`usage error: unknown mode ${mode}`)
    return 2
  }
  emit('startup_complete', { client: CLIENT_NAME })
  try {
    await registerCodecs()
    await modes[mode](options)
  } catch (error) {
    flush()
    console.error(`FAIL kafkajs ${mode}: ${error.stack}`)
    return 1
  }
  emit('shutdown_complete')
  flush()
  return 0
}

main().then(code => process.stdout.write('', () => process.exit(code)))
