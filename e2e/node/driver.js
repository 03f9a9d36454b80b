#!/usr/bin/env node
'use strict'
/*
 * Floe e2e checks with kafkajs 2.2.4.
 *
 *   node driver.js roundtrip   --bootstrap H:P --topic T [--partitions 12] --records N
 *   node driver.js admin       --bootstrap H:P --topic T
 *   node driver.js idempotence --bootstrap H:P --topic T [--partitions 12] --records N
 *
 * Every mode also takes --tls-ca-file CA.pem (TLS, trusting that CA) and --sasl-mechanism
 * PLAIN|SCRAM-SHA-256|SCRAM-SHA-512 with --sasl-user and --sasl-password.
 *
 * Each mode prints "OK kafkajs <mode> ..." and exits 0 when every check held; otherwise it prints
 * "FAIL kafkajs <mode>: <reasons>" on stderr and exits 1 (2 for a usage error). KAFKAJS_LOG=info
 * (or debug, warn) shows the client's own log on stderr. See README.md.
 */

const {
  Kafka,
  logLevel,
  Partitioners,
  AssignerProtocol,
  ConfigResourceTypes,
  ConfigSource,
} = require('kafkajs')
const { registerCodecs, CODECS } = require('./codecs')

const CLIENT_ID = 'floe-e2e-kafkajs'
const CONSUME_DEADLINE_MS = 150000
const DRAIN_MS = 1500

class CheckFailed extends Error {}

// ------------------------------------------------------------------------------------------------
// The record format every Floe e2e driver shares (see e2e/src/lib.rs, records).
// ------------------------------------------------------------------------------------------------

const recordKey = i => Buffer.from(`key-${String(i).padStart(8, '0')}`)

function recordValue(i) {
  const prefix = Buffer.from(`value-${i}-`)
  const tail = Buffer.alloc(i % 300)
  for (let j = 0; j < tail.length; j++) tail[j] = (i * 31 + j) % 251
  return Buffer.concat([prefix, tail])
}

const recordHeaders = i => ({ 'h-index': String(i), 'h-client': 'kafkajs' })

const message = i => ({ key: recordKey(i), value: recordValue(i), headers: recordHeaders(i) })

function parseKey(key) {
  const text = key ? key.toString() : ''
  const match = /^key-(\d{8})$/.exec(text)
  return match ? Number(match[1]) : -1
}

/** Returns null when value and headers are what record i must carry. */
function checkPayload(i, m) {
  const want = recordValue(i)
  if (!m.value || !want.equals(m.value)) {
    return `value differs (got ${m.value ? m.value.length : 'null'} bytes, want ${want.length})`
  }
  const headers = Object.entries(m.headers || {}).map(([k, v]) => `${k}=${v}`)
  const wantHeaders = Object.entries(recordHeaders(i)).map(([k, v]) => `${k}=${v}`)
  if (headers.join(',') !== wantHeaders.join(',')) {
    return `headers ${headers.join(',')}, want ${wantHeaders.join(',')}`
  }
  return null
}

/** Collects check failures; reports the first few and the total. */
class Problems {
  constructor() {
    this.first = []
    this.count = 0
  }
  add(text) {
    this.count++
    if (this.first.length < 20) this.first.push(text)
  }
  throwIfAny(what) {
    if (this.count === 0) return
    let text = `${what}: ${this.count} problem(s)`
    for (const line of this.first) text += `\n  - ${line}`
    if (this.count > this.first.length) text += `\n  ... and ${this.count - this.first.length} more`
    throw new CheckFailed(text)
  }
}

/** Polls check() until it returns true or the deadline passes. */
async function waitFor(what, timeoutMs, check) {
  const deadline = Date.now() + timeoutMs
  let last
  for (;;) {
    try {
      if (await check()) return
      last = undefined
    } catch (error) {
      last = error
    }
    if (Date.now() > deadline) {
      throw new CheckFailed(`${what}: not true after ${timeoutMs} ms${last ? ` (last error: ${last.message})` : ''}`)
    }
    await new Promise(resolve => setTimeout(resolve, 100))
  }
}

/** TLS and SASL settings from --tls-ca-file and --sasl-*, for every client this run makes. */
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

function kafka(bootstrap) {
  const level = { debug: logLevel.DEBUG, info: logLevel.INFO, warn: logLevel.WARN }[process.env.KAFKAJS_LOG]
  return new Kafka({
    clientId: CLIENT_ID,
    brokers: [bootstrap],
    logLevel: level === undefined ? logLevel.ERROR : level,
    retry: { retries: 8 },
    ...security,
  })
}

async function createTopic(admin, topic, numPartitions, configEntries = []) {
  const created = await admin.createTopics({
    topics: [{ topic, numPartitions, replicationFactor: 1, configEntries }],
    waitForLeaders: true,
  })
  if (created !== true) throw new CheckFailed(`createTopics(${topic}) answered ${created}: the topic already exists`)
}

/** Where kafkajs's default (Java-compatible murmur2) partitioner sends a keyed record. */
function partitionOf(key, topic, partitions) {
  const partitionMetadata = Array.from({ length: partitions }, (_, p) => ({ partitionId: p, leader: 0 }))
  return Partitioners.DefaultPartitioner()({ topic, partitionMetadata, message: { key } })
}

/**
 * Sends records [from, to) in chunks, one send at a time, and returns where each landed: a send's
 * answer holds one base offset per partition, and records of one partition take consecutive
 * offsets from it in send order.
 */
async function sendRange(producer, topic, partitions, from, to, compression, chunk, positions) {
  for (let start = from; start < to; start += chunk) {
    const end = Math.min(to, start + chunk)
    const messages = []
    for (let i = start; i < end; i++) messages.push(message(i))
    const answers = await producer.send({ topic, acks: -1, compression, messages })
    const base = new Map(answers.map(a => [a.partition, Number(a.baseOffset)]))
    const next = new Map()
    for (let i = start; i < end; i++) {
      const partition = partitionOf(messages[i - start].key, topic, partitions)
      if (!base.has(partition)) throw new CheckFailed(`the send of ${start}..${end} has no answer for partition ${partition}`)
      const offset = base.get(partition) + (next.get(partition) || 0)
      next.set(partition, (next.get(partition) || 0) + 1)
      positions[i] = [partition, offset]
    }
  }
}

// ------------------------------------------------------------------------------------------------
// roundtrip
// ------------------------------------------------------------------------------------------------

const codecOf = (i, n) => {
  for (let c = 0; c < CODECS.length; c++) if (i < Math.floor(((c + 1) * n) / CODECS.length)) return c
  return CODECS.length - 1
}

async function roundtrip({ bootstrap, topic, partitions, records: n }) {
  const started = Date.now()
  const client = kafka(bootstrap)
  const admin = client.admin()
  await admin.connect()
  try {
    await createTopic(admin, topic, partitions)

    // Five producers in parallel, one per codec, each sending a contiguous fifth of the range.
    const positions = new Array(n)
    await Promise.all(
      CODECS.map(async ([name, compression], c) => {
        const producer = client.producer({ createPartitioner: Partitioners.DefaultPartitioner })
        await producer.connect()
        try {
          const from = Math.floor((c * n) / CODECS.length)
          const to = Math.floor(((c + 1) * n) / CODECS.length)
          await sendRange(producer, topic, partitions, from, to, compression, 2000, positions)
        } catch (error) {
          throw new CheckFailed(`the ${name} producer failed: ${error.message}`)
        } finally {
          await producer.disconnect()
        }
      })
    )
    console.log(`produced ${n} records (${CODECS.map(([name]) => name).join('/')}) in ${(Date.now() - started) / 1000} s`)

    // Read everything back with one group member.
    const groupId = `${topic}-group`
    const problems = new Problems()
    const seen = new Uint8Array(n)
    const lastOffset = new Map()
    const lastIndex = new Map()
    let distinct = 0
    let total = 0
    const consumer = client.consumer({ groupId, maxWaitTimeInMs: 500 })
    await consumer.connect()
    await consumer.subscribe({ topic, fromBeginning: true })
    const positionsByPartition = new Map()
    await consumer.run({
      autoCommit: false,
      eachBatch: async ({ batch }) => {
        for (const m of batch.messages) {
          total++
          const p = batch.partition
          const offset = Number(m.offset)
          if (lastOffset.has(p) && offset <= lastOffset.get(p)) {
            problems.add(`partition ${p}: offset ${offset} delivered after ${lastOffset.get(p)}`)
          }
          lastOffset.set(p, offset)
          positionsByPartition.set(p, offset + 1)
          const i = parseKey(m.key)
          if (i < 0 || i >= n) {
            problems.add(`partition ${p} offset ${offset}: unexpected key ${m.key}`)
            continue
          }
          if (seen[i]) {
            problems.add(`record ${i} delivered twice (partition ${p} offset ${offset})`)
            continue
          }
          seen[i] = 1
          distinct++
          const [wantPartition, wantOffset] = positions[i]
          if (wantPartition !== p || wantOffset !== offset) {
            problems.add(`record ${i} read at ${p}@${offset}, acknowledged at ${wantPartition}@${wantOffset}`)
          }
          const bad = checkPayload(i, m)
          if (bad) problems.add(`record ${i} (${CODECS[codecOf(i, n)][0]}, partition ${p} offset ${offset}): ${bad}`)
          const key = `${p}/${codecOf(i, n)}`
          if (lastIndex.has(key) && i <= lastIndex.get(key)) {
            problems.add(`partition ${p}: record ${i} read after ${lastIndex.get(key)} of the same producer: send order lost`)
          }
          lastIndex.set(key, i)
        }
      },
    })
    try {
      await waitFor(`reading ${n} records back`, CONSUME_DEADLINE_MS, () => distinct >= n)
      // Keep consuming a little longer to catch duplicates or extra records.
      await new Promise(resolve => setTimeout(resolve, DRAIN_MS))
      await consumer.commitOffsets(
        [...positionsByPartition].map(([partition, offset]) => ({ topic, partition, offset: String(offset) }))
      )
    } finally {
      await consumer.disconnect()
    }

    // The committed offsets, read back through the admin client, equal the high watermarks.
    const committed = await admin.fetchOffsets({ groupId, topics: [topic] })
    const ends = await admin.fetchTopicOffsets(topic)
    let sum = 0
    for (const { partition, high } of ends) {
      sum += Number(high)
      const commit = committed[0].partitions.find(entry => entry.partition === partition)
      if (!commit || commit.offset !== high) {
        problems.add(`partition ${partition}: committed offset ${commit && commit.offset}, high watermark ${high}`)
      }
    }
    if (sum !== n) problems.add(`the high watermarks add up to ${sum}, want ${n}`)
    problems.throwIfAny(`roundtrip on ${topic} (${total} records read)`)
    console.log(`read ${total} records in group ${groupId} and committed ${ends.length} offsets in ${(Date.now() - started) / 1000} s`)
    console.log(`OK kafkajs roundtrip ${n} records`)
  } finally {
    await admin.disconnect()
  }
}

// ------------------------------------------------------------------------------------------------
// admin
// ------------------------------------------------------------------------------------------------

async function expectConfigs(admin, topic, want) {
  const { resources } = await admin.describeConfigs({
    resources: [{ type: ConfigResourceTypes.TOPIC, name: topic }],
    includeSynonyms: false,
  })
  const resource = resources[0]
  if (!resource || resource.errorCode !== 0) {
    throw new CheckFailed(`describeConfigs(${topic}) failed: ${resource && resource.errorMessage}`)
  }
  const problems = new Problems()
  for (const [name, [value, source]] of Object.entries(want)) {
    const entry = resource.configEntries.find(e => e.configName === name)
    if (!entry) problems.add(`${name} is not described`)
    else if (entry.configValue !== value || entry.configSource !== source) {
      problems.add(`${name} = ${entry.configValue} (source ${entry.configSource}), want ${value} (source ${source})`)
    }
  }
  problems.throwIfAny(`configs of ${topic}`)
}

async function partitionCount(admin, topic) {
  const { topics } = await admin.fetchTopicMetadata({ topics: [topic] })
  return topics[0].partitions.length
}

async function expectRejection(promise, type, what) {
  try {
    await promise
  } catch (error) {
    const types = [error.type, ...(error.errors || []).map(e => e.type), ...(error.groups || []).map(g => g.error && g.error.type)]
    if (types.includes(type)) return
    throw new CheckFailed(`${what}: want ${type}, got ${error.name}: ${error.message} (${types})`)
  }
  throw new CheckFailed(`${what}: want ${type}, but it succeeded`)
}

async function adminMode({ bootstrap, topic }) {
  const client = kafka(bootstrap)
  const admin = client.admin()
  await admin.connect()
  try {
    // Topics: create (a second create reports the existing topic), grow, refuse to shrink.
    await createTopic(admin, topic, 3, [{ name: 'retention.ms', value: '3600000' }])
    const again = await admin.createTopics({ topics: [{ topic, numPartitions: 3, replicationFactor: 1 }] })
    if (again !== false) throw new CheckFailed(`creating ${topic} twice answered ${again}, want false (TOPIC_ALREADY_EXISTS)`)
    if (!(await admin.listTopics()).includes(topic)) throw new CheckFailed(`listTopics does not list ${topic}`)
    if ((await partitionCount(admin, topic)) !== 3) throw new CheckFailed(`${topic} does not have 3 partitions`)
    await admin.createPartitions({ topicPartitions: [{ topic, count: 5 }] })
    await waitFor(`${topic} to show 5 partitions`, 30000, async () => (await partitionCount(admin, topic)) === 5)
    await expectRejection(admin.createPartitions({ topicPartitions: [{ topic, count: 3 }] }), 'INVALID_PARTITIONS', `shrinking ${topic} to 3 partitions`)
    console.log(`topic ${topic}: created with 3 partitions, grown to 5, shrinking refused`)

    // Configs: kafkajs alters with AlterConfigs, whose semantics replace every set config.
    await expectConfigs(admin, topic, {
      'retention.ms': ['3600000', ConfigSource.TOPIC_CONFIG],
      'cleanup.policy': ['delete', ConfigSource.DEFAULT_CONFIG],
    })
    const alter = async configEntries =>
      admin.alterConfigs({ validateOnly: false, resources: [{ type: ConfigResourceTypes.TOPIC, name: topic, configEntries }] })
    await alter([
      { name: 'retention.ms', value: '7200000' },
      { name: 'retention.bytes', value: '1048576' },
    ])
    await expectConfigs(admin, topic, {
      'retention.ms': ['7200000', ConfigSource.TOPIC_CONFIG],
      'retention.bytes': ['1048576', ConfigSource.TOPIC_CONFIG],
    })
    await alter([{ name: 'retention.ms', value: '7200000' }])
    await expectConfigs(admin, topic, {
      'retention.ms': ['7200000', ConfigSource.TOPIC_CONFIG],
      'retention.bytes': ['-1', ConfigSource.DEFAULT_CONFIG],
    })
    console.log(`configs of ${topic} described and replaced (AlterConfigs)`)

    await groupAdmin(client, admin, topic)

    await admin.deleteTopics({ topics: [topic] })
    await waitFor(`${topic} to disappear`, 30000, async () => !(await admin.listTopics()).includes(topic))
    console.log(`topic ${topic} deleted`)
    console.log('OK kafkajs admin')
  } finally {
    await admin.disconnect()
  }
}

async function groupAdmin(client, admin, topic) {
  const groupId = `${topic}-admin-group`
  const records = 50
  const producer = client.producer({ createPartitioner: Partitioners.DefaultPartitioner })
  await producer.connect()
  await producer.send({ topic, acks: -1, messages: Array.from({ length: records }, (_, i) => message(i)) })
  await producer.disconnect()

  const consumer = client.consumer({ groupId, maxWaitTimeInMs: 500 })
  let connected = true
  await consumer.connect()
  try {
    await consumer.subscribe({ topic, fromBeginning: true })
    let read = 0
    await consumer.run({
      autoCommit: false,
      eachBatch: async ({ batch, resolveOffset }) => {
        for (const m of batch.messages) {
          read++
          resolveOffset(m.offset)
        }
        await consumer.commitOffsets([{ topic, partition: batch.partition, offset: String(Number(batch.lastOffset()) + 1) }])
      },
    })
    await waitFor(`the group member to read ${records} records`, 60000, () => read >= records)
    await waitFor(`${groupId}'s commits to add up to ${records}`, 30000, async () => {
      const [{ partitions }] = await admin.fetchOffsets({ groupId, topics: [topic] })
      return partitions.reduce((sum, p) => sum + Math.max(0, Number(p.offset)), 0) === records
    })

    // While the member is alive: listed, described as Stable with all 5 partitions.
    const { groups } = await admin.listGroups()
    const listed = groups.find(g => g.groupId === groupId)
    if (!listed || listed.protocolType !== 'consumer') {
      throw new CheckFailed(`listGroups: ${groupId} listed as ${JSON.stringify(listed)}, want protocol type consumer`)
    }
    const described = (await admin.describeGroups([groupId])).groups[0]
    if (described.state !== 'Stable' || described.protocolType !== 'consumer' || described.members.length !== 1) {
      throw new CheckFailed(`describeGroups(${groupId}): state ${described.state}, protocol type ${described.protocolType}, ${described.members.length} members`)
    }
    const member = described.members[0]
    const assignment = AssignerProtocol.MemberAssignment.decode(member.memberAssignment)
    const assigned = (assignment && assignment.assignment[topic]) || []
    if ([...assigned].sort().join(',') !== '0,1,2,3,4' || member.clientId !== CLIENT_ID) {
      throw new CheckFailed(`describeGroups(${groupId}): member ${member.clientId} assigned ${assigned}, want ${CLIENT_ID} with 0-4`)
    }
    await expectRejection(admin.deleteGroups([groupId]), 'NON_EMPTY_GROUP', `deleting ${groupId} with a live member`)
    await consumer.disconnect()
    connected = false

    // Once the member has left: Empty, deletable once, then gone.
    await waitFor(`${groupId} to become Empty`, 30000, async () => (await admin.describeGroups([groupId])).groups[0].state === 'Empty')
    const deleted = await admin.deleteGroups([groupId])
    if (deleted.length !== 1 || deleted[0].errorCode !== 0) throw new CheckFailed(`deleteGroups(${groupId}) answered ${JSON.stringify(deleted)}`)
    await expectRejection(admin.deleteGroups([groupId]), 'GROUP_ID_NOT_FOUND', `deleting ${groupId} twice`)
    if ((await admin.listGroups()).groups.some(g => g.groupId === groupId)) {
      throw new CheckFailed(`listGroups still lists the deleted group ${groupId}`)
    }
    console.log(`group ${groupId} listed, described (1 member, 5 partitions), refused deletion while live, deleted when empty`)
  } finally {
    if (connected) await consumer.disconnect()
  }
}

// ------------------------------------------------------------------------------------------------
// idempotence
// ------------------------------------------------------------------------------------------------

async function idempotence({ bootstrap, topic, partitions, records: n }) {
  const client = kafka(bootstrap)
  const admin = client.admin()
  await admin.connect()
  try {
    await createTopic(admin, topic, partitions)
    // kafkajs requires maxInFlightRequests 1 (and acks -1) for an idempotent producer.
    const producer = client.producer({
      idempotent: true,
      maxInFlightRequests: 1,
      createPartitioner: Partitioners.DefaultPartitioner,
    })
    await producer.connect()
    const positions = new Array(n)
    try {
      await sendRange(producer, topic, partitions, 0, n, CODECS[0][1], 1000, positions)
    } finally {
      await producer.disconnect()
    }
    console.log(`produced ${n} records with an idempotent producer`)

    const ends = await admin.fetchTopicOffsets(topic)
    const problems = new Problems()
    const endOf = new Map(ends.map(({ partition, high }) => [partition, Number(high)]))
    const total = [...endOf.values()].reduce((a, b) => a + b, 0)
    if (total !== n) problems.add(`the log holds ${total} records, want exactly ${n}`)

    const seen = new Uint16Array(n)
    const next = new Map()
    const producerIds = new Set()
    let read = 0
    const consumer = client.consumer({ groupId: `${topic}-reader`, maxWaitTimeInMs: 500 })
    await consumer.connect()
    try {
      await consumer.subscribe({ topic, fromBeginning: true })
      await consumer.run({
        autoCommit: false,
        eachBatch: async ({ batch }) => {
          for (const m of batch.messages) {
            read++
            const p = batch.partition
            const offset = Number(m.offset)
            const expected = next.has(p) ? next.get(p) : 0
            if (offset !== expected) problems.add(`partition ${p}: offset ${offset}, want ${expected} (gap or repeat)`)
            next.set(p, offset + 1)
            const context = m.batchContext || {}
            producerIds.add(`${context.producerId}/${context.producerEpoch}`)
            const i = parseKey(m.key)
            if (i < 0 || i >= n) {
              problems.add(`partition ${p} offset ${offset}: unexpected key ${m.key}`)
              continue
            }
            seen[i]++
            if (positions[i][0] !== p || positions[i][1] !== offset) {
              problems.add(`record ${i} read at ${p}@${offset}, acknowledged at ${positions[i][0]}@${positions[i][1]}`)
            }
            const bad = checkPayload(i, m)
            if (bad) problems.add(`record ${i}: ${bad}`)
          }
        },
      })
      await waitFor(`reading ${total} records back`, CONSUME_DEADLINE_MS, () => read >= total)
      await new Promise(resolve => setTimeout(resolve, DRAIN_MS))
    } finally {
      await consumer.disconnect()
    }
    for (const [p, end] of endOf) {
      if ((next.get(p) || 0) !== end) problems.add(`partition ${p} read up to ${next.get(p) || 0}, its end offset is ${end}`)
    }
    let duplicates = 0
    let missing = 0
    for (const times of seen) {
      if (times === 0) missing++
      else duplicates += times - 1
    }
    if (duplicates || missing) problems.add(`${duplicates} duplicates and ${missing} missing records`)
    const ids = [...producerIds]
    if (ids.length !== 1 || Number(ids[0].split('/')[0]) < 0 || Number(ids[0].split('/')[1]) < 0) {
      problems.add(`batches carry producer id/epoch ${ids.join(', ')}, want one non-negative pair`)
    }
    problems.throwIfAny(`idempotence on ${topic} (${read} records read)`)
    console.log(`read ${read} records as producer ${ids[0]}: each exactly once, offsets gapless in ${endOf.size} partitions`)
    console.log(`OK kafkajs idempotence ${n} records`)
  } finally {
    await admin.disconnect()
  }
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
  return { mode, options }
}

async function main() {
  let mode = process.argv[2] || ''
  let options
  try {
    ;({ mode, options } = parseArguments(process.argv.slice(2)))
  } catch (error) {
    console.error(`usage error: ${error.message}\nusage: node driver.js roundtrip|admin|idempotence --bootstrap H:P --topic T [--partitions P] [--records N]`)
    return 2
  }
  security = securityOf(options)
  const modes = { roundtrip, admin: adminMode, idempotence }
  if (!modes[mode]) {
    console.error(`usage error: unknown mode ${mode}`)
    return 2
  }
  try {
    await registerCodecs()
    await modes[mode](options)
    return 0
  } catch (error) {
    console.error(`FAIL kafkajs ${mode}: ${error instanceof CheckFailed ? error.message : error.stack}`)
    return 1
  }
}

main().then(code => process.exit(code))
