'use strict'
// kafkajs ships only gzip; other codecs are registered by the application (kafkajs's idiom:
// `CompressionCodecs[CompressionTypes.X] = factory`). Snappy comes from kafkajs-snappy; LZ4 and
// ZSTD are thin adapters over pure-JS/WASM libraries, because the native add-ons kafkajs's docs
// suggest (kafkajs-lz4, @kafkajs/zstd) do not build on Node 20.

const { CompressionTypes, CompressionCodecs } = require('kafkajs')
const SnappyCodec = require('kafkajs-snappy')
const lz4 = require('lz4js')
const xxh32 = require('lz4js/xxh32').hash
const zstd = require('@bokuweb/zstd-wasm')

// An LZ4 frame as Kafka's clients write and read it (KIP-57): version 01 with the block
// independence flag, 4 MiB blocks, no content size or checksums. lz4js's own compressFrame leaves
// the independence flag unset (its blocks share one hash table), which Kafka's Lz4BlockInputStream
// refuses ("Dependent block stream is unsupported"), so the frame is written here, each block
// compressed on its own with a fresh hash table.
const LZ4_MAGIC = 0x184d2204
const LZ4_FLG = 0x40 | 0x20 // version 01, independent blocks
const LZ4_BD = 7 << 4 // 4 MiB maximum block size
const LZ4_BLOCK = 4 << 20

function lz4Frame(input) {
  const header = Buffer.alloc(7)
  header.writeUInt32LE(LZ4_MAGIC, 0)
  header[4] = LZ4_FLG
  header[5] = LZ4_BD
  header[6] = (xxh32(0, header, 4, 2) >>> 8) & 0xff
  const parts = [header]
  for (let start = 0; start < input.length; start += LZ4_BLOCK) {
    const block = input.subarray(start, Math.min(input.length, start + LZ4_BLOCK))
    const compressed = Buffer.alloc(lz4.compressBound(block.length))
    const size = lz4.compressBlock(block, compressed, 0, block.length, new Uint32Array(1 << 16))
    const length = Buffer.alloc(4)
    if (size === 0 || size >= block.length) {
      length.writeUInt32LE((0x80000000 | block.length) >>> 0, 0) // stored uncompressed
      parts.push(length, block)
    } else {
      length.writeUInt32LE(size, 0)
      parts.push(length, compressed.subarray(0, size))
    }
  }
  parts.push(Buffer.alloc(4)) // end mark
  return Buffer.concat(parts)
}

const Lz4Codec = () => ({
  async compress(encoder) {
    return lz4Frame(encoder.buffer)
  },
  async decompress(buffer) {
    return Buffer.from(lz4.decompress(buffer))
  },
})

const ZstdCodec = () => ({
  async compress(encoder) {
    return Buffer.from(zstd.compress(encoder.buffer, 3))
  },
  async decompress(buffer) {
    return Buffer.from(zstd.decompress(buffer))
  },
})

async function registerCodecs() {
  await zstd.init()
  CompressionCodecs[CompressionTypes.Snappy] = SnappyCodec
  CompressionCodecs[CompressionTypes.LZ4] = Lz4Codec
  CompressionCodecs[CompressionTypes.ZSTD] = ZstdCodec
}

const CODECS = [
  ['none', CompressionTypes.None],
  ['gzip', CompressionTypes.GZIP],
  ['snappy', CompressionTypes.Snappy],
  ['lz4', CompressionTypes.LZ4],
  ['zstd', CompressionTypes.ZSTD],
]

module.exports = { registerCodecs, CODECS }
