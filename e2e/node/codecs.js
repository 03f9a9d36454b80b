'use strict'
// kafkajs ships only gzip; other codecs are registered by the application (kafkajs's idiom:
// `CompressionCodecs[CompressionTypes.X] = factory`). Snappy comes from kafkajs-snappy; LZ4 and
// ZSTD are thin adapters over pure-JS/WASM libraries, because the native add-ons kafkajs's docs
// suggest (kafkajs-lz4, @kafkajs/zstd) do not build on Node 20.

const { CompressionTypes, CompressionCodecs } = require('kafkajs')
const SnappyCodec = require('kafkajs-snappy')
const lz4 = require('lz4js')
const zstd = require('@bokuweb/zstd-wasm')

const Lz4Codec = () => ({
  // LZ4 frame format (what Kafka's KIP-57 clients write and read).
  async compress(encoder) {
    return Buffer.from(lz4.compress(encoder.buffer))
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
