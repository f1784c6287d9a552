// Drive tus-js-client (the official tus client) from the test suite, under Node.
//
//   node tus_upload.mjs <upload|resume|terminate> <endpoint> <file> <url-store.json>
//
// Prints one line per event for the test to read: "url <upload url>",
// "accepted <bytes>" after each stored chunk, "resuming <url> <offset>",
// "done <Depot-File-Path>" and "terminated <url>". Exits 1 on an error.
import fs from 'node:fs'
import path from 'node:path'
import * as tus from 'tus-js-client'

const [mode, endpoint, file, store] = process.argv.slice(2)
const say = (line) => process.stdout.write(line + '\n')

const upload = new tus.Upload(fs.createReadStream(file), {
  endpoint,
  chunkSize: 5 * 1024 * 1024,
  urlStorage: new tus.FileUrlStorage(store),
  retryDelays: [0, 250, 1000],
  metadata: { filename: path.basename(file), filetype: 'application/octet-stream' },
  onUploadUrlAvailable() {
    say(`url ${upload.url}`)
  },
  onChunkComplete(_size, accepted) {
    say(`accepted ${accepted}`)
    if (mode === 'terminate') {
      upload.abort(true).then(() => {
        say(`terminated ${upload.url}`)
        process.exit(0)
      }, fail)
    }
  },
  onSuccess({ lastResponse }) {
    say(`done ${lastResponse.getHeader('Depot-File-Path')}`)
  },
  onError: fail,
})

function fail(error) {
  process.stderr.write(`error ${error}\n`)
  process.exit(1)
}

if (mode === 'resume') {
  const previous = await upload.findPreviousUploads()
  if (previous.length === 0) fail(new Error('no previous upload to resume'))
  upload.resumeFromPreviousUpload(previous[0])
  say(`resuming ${previous[0].uploadUrl}`)
}
upload.start()
