// depotx direct uploads, in the browser: send a file with a ticket from
// storage.prepare_upload(...).to_dict(), straight to the bucket (S3) or to the app
// (other storages); the same code for both. No dependencies, no build step.
//
//   const ticket = await (await fetch('/uploads/ticket', {method: 'POST', ...})).json()
//   await depotxUpload(ticket, file, {
//     onProgress: (sent, total) => bar.value = sent / total,
//     partUrls: (numbers) => fetch('/uploads/parts', {method: 'POST', body: JSON.stringify(
//       {token: ticket.token, parts: numbers})}).then((r) => r.json()).then((d) => d.urls),
//   })
//   await fetch('/documents', {method: 'POST', body: JSON.stringify({token: ticket.token})})
//
// Form tickets POST the fields, then the file; PUT tickets (GCS, Azure) send the file as
// the body of one signed PUT with the ticket's headers; multipart tickets PUT each part
// to a URL the app presigns on demand (partUrls), four at a time, each retried three times.
// Rejects with an Error whose message is the service's own, in words.
;(function (root) {
  'use strict'

  var PARALLEL = 4
  var RETRIES = [500, 2000, 5000]

  function send(method, url, body, headers, onProgress) {
    return new Promise(function (resolve, reject) {
      var xhr = new XMLHttpRequest()
      xhr.open(method, url)
      Object.keys(headers || {}).forEach(function (name) {
        xhr.setRequestHeader(name, headers[name])
      })
      xhr.upload.onprogress = function (event) {
        if (onProgress) onProgress(event.loaded)
      }
      xhr.onload = function () {
        if (xhr.status >= 200 && xhr.status < 300) resolve(xhr)
        else {
          var error = new Error(explain(xhr))
          error.status = xhr.status
          reject(error)
        }
      }
      xhr.onerror = function () {
        var error = new Error('the upload could not reach ' + new URL(url, location.href).host)
        error.status = 0
        reject(error)
      }
      xhr.send(body)
    })
  }

  // The service's message: S3 and GCS answer XML (<Message>), the app JSON ({"error"}).
  function explain(xhr) {
    var text = xhr.responseText || ''
    var xml = /<Message>([^<]*)<\/Message>/.exec(text)
    if (xml) return xml[1] + ' (' + xhr.status + ')'
    try {
      var json = JSON.parse(text)
      if (json && json.error) return json.error + ' (' + xhr.status + ')'
    } catch (ignored) {
      // not JSON: fall through to the status
    }
    return 'the upload failed with status ' + xhr.status
  }

  function retrying(attempt) {
    return attempt().catch(function (error) {
      var tries = 0
      function again(previous) {
        if (tries >= RETRIES.length || (previous.status >= 400 && previous.status < 500)) {
          throw previous
        }
        var delay = RETRIES[tries++]
        return new Promise(function (wake) {
          setTimeout(wake, delay)
        })
          .then(attempt)
          .catch(again)
      }
      return again(error)
    })
  }

  function formUpload(ticket, file, options) {
    var upload = ticket.upload
    if (upload.method === 'PUT') {
      // A signed URL (GCS, Azure): the file is the body; the signature names the headers.
      return send('PUT', upload.url, file, upload.headers, function (loaded) {
        if (options.onProgress) options.onProgress(Math.min(loaded, file.size), file.size)
      })
    }
    var form = new FormData()
    Object.keys(upload.fields).forEach(function (name) {
      form.append(name, upload.fields[name])
    })
    form.append(upload.file_field, file)
    return send('POST', upload.url, form, upload.headers, function (loaded) {
      if (options.onProgress) options.onProgress(Math.min(loaded, file.size), file.size)
    })
  }

  function multipartUpload(ticket, file, options) {
    if (typeof options.partUrls !== 'function') {
      return Promise.reject(new Error('a multipart ticket needs options.partUrls(numbers)'))
    }
    var size = ticket.multipart.part_size
    var count = ticket.multipart.part_count
    var sent = {}
    var next = 1
    function progress() {
      if (!options.onProgress) return
      var total = 0
      Object.keys(sent).forEach(function (n) {
        total += sent[n]
      })
      options.onProgress(Math.min(total, file.size), file.size)
    }
    function worker() {
      if (next > count) return Promise.resolve()
      var number = next++
      var blob = file.slice((number - 1) * size, number * size)
      return retrying(function () {
        return Promise.resolve(options.partUrls([number])).then(function (urls) {
          return send('PUT', urls[number], blob, {}, function (loaded) {
            sent[number] = loaded
            progress()
          })
        })
      }).then(function () {
        sent[number] = blob.size
        progress()
        return worker()
      })
    }
    var workers = []
    for (var i = 0; i < Math.min(PARALLEL, count); i++) workers.push(worker())
    return Promise.all(workers)
  }

  root.depotxUpload = function (ticket, file, options) {
    options = options || {}
    if (file.size > ticket.max_size) {
      return Promise.reject(new Error(file.name + ' is larger than the ' + ticket.max_size + ' bytes allowed'))
    }
    var done = ticket.multipart ? multipartUpload(ticket, file, options) : formUpload(ticket, file, options)
    return done.then(function () {
      if (options.onProgress) options.onProgress(file.size, file.size)
    })
  }
})(typeof window !== 'undefined' ? window : this)
