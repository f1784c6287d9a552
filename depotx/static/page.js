// The page of `depotx serve`: drag and drop, several files at once, resumable uploads
// through /tus/ (tus-js-client, vendored beside this file), copy-link and delete.
// No build step; the page works without it (plain form upload, plain links).
;(function () {
  'use strict'

  var body = document.body
  var root = body.dataset.root
  var storage = body.dataset.storage
  var maxSize = body.dataset.maxSize ? Number(body.dataset.maxSize) : null
  var limitText = body.dataset.limit
  // A storage that presigns (S3): the bytes go straight to the bucket (depotx-upload.js).
  var direct = body.dataset.direct === '1'
  var form = document.getElementById('upload')
  var input = document.getElementById('file')
  var drop = document.getElementById('drop')
  var uploads = document.getElementById('uploads')
  var notice = document.getElementById('notice')

  document.documentElement.classList.remove('no-js')
  document.documentElement.classList.add('js')
  input.multiple = true
  input.required = false

  form.addEventListener('submit', function (event) {
    event.preventDefault()
    start(input.files)
  })
  input.addEventListener('change', function () {
    start(input.files)
    input.value = ''
  })
  drop.addEventListener('dragover', function (event) {
    event.preventDefault()
    drop.classList.add('over')
  })
  drop.addEventListener('dragleave', function () {
    drop.classList.remove('over')
  })
  drop.addEventListener('drop', function (event) {
    event.preventDefault()
    drop.classList.remove('over')
    start(event.dataTransfer.files)
  })

  var switcher = document.getElementById('storage')
  if (switcher) {
    switcher.addEventListener('change', function () {
      switcher.form.submit()
    })
  }

  function start(files) {
    Array.prototype.slice.call(files).forEach(uploadOne)
  }

  function uploadOne(file) {
    var row = document.createElement('li')
    var name = document.createElement('span')
    var bar = document.createElement('progress')
    var status = document.createElement('span')
    var cancel = document.createElement('button')
    name.className = 'name'
    name.textContent = file.name
    bar.max = 100
    bar.value = 0
    status.className = 'status'
    status.textContent = 'starting'
    cancel.type = 'button'
    cancel.className = 'cancel'
    cancel.textContent = 'Cancel'
    row.append(name, bar, status, cancel)
    uploads.appendChild(row)

    if (maxSize !== null && file.size > maxSize) {
      fail(row, file.name + ' is larger than the upload limit of ' + limitText + '.')
      return
    }
    if (direct) {
      uploadDirect(file, row, bar, status, cancel)
      return
    }
    var upload = new tus.Upload(file, {
      endpoint: root + '/tus/',
      chunkSize: 5 * 1024 * 1024,
      retryDelays: [0, 1000, 3000, 5000, 10000, 20000],
      removeFingerprintOnSuccess: true,
      metadata: { filename: file.name, filetype: file.type || 'application/octet-stream', storage: storage },
      onProgress: function (sent, total) {
        var percent = total ? Math.floor((sent / total) * 100) : 100
        bar.value = percent
        // Every byte sent: the server still stores the file before it answers.
        status.textContent = percent === 100 ? '100 % · storing' : percent + ' %'
      },
      onShouldRetry: function (error, attempt) {
        status.textContent = 'connection lost, retrying (' + (attempt + 1) + ')'
        var response = error.originalResponse
        var code = response ? response.getStatus() : 0
        return !response || code === 409 || code === 423 || code >= 500
      },
      onSuccess: function () {
        bar.value = 100
        status.textContent = '100 % · stored'
        row.classList.add('done')
        cancel.remove()
        refresh()
      },
      onError: function (error) {
        fail(row, explain(error))
      },
    })
    cancel.addEventListener('click', function () {
      upload.abort(true).then(
        function () {
          row.remove()
        },
        function () {
          row.remove()
        },
      )
    })
    upload.findPreviousUploads().then(function (previous) {
      if (previous.length) {
        upload.resumeFromPreviousUpload(previous[0])
        status.textContent = 'resuming'
      }
      upload.start()
    })
  }

  function postJSON(path, body) {
    return fetch(root + path + '?storage=' + encodeURIComponent(storage), {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify(body),
    }).then(function (response) {
      return response
        .json()
        .catch(function () {
          return {}
        })
        .then(function (answer) {
          if (!response.ok) throw new Error(answer.error || 'error ' + response.status)
          return answer
        })
    })
  }

  // Ticket from the server, bytes to the bucket, then the server makes a file of them.
  function uploadDirect(file, row, bar, status, cancel) {
    var stopped = false
    cancel.addEventListener('click', function () {
      stopped = true
      row.remove()
    })
    var wanted = { filename: file.name, content_type: file.type || null, size: file.size }
    postJSON('/uploads/ticket', wanted)
      .then(function (ticket) {
        return depotxUpload(ticket, file, {
          onProgress: function (sent, total) {
            var percent = total ? Math.floor((sent / total) * 100) : 100
            bar.value = percent
            status.textContent = percent + ' %'
          },
          partUrls: function (numbers) {
            return postJSON('/uploads/parts', { token: ticket.token, parts: numbers }).then(
              function (answer) {
                return answer.urls
              },
            )
          },
        }).then(function () {
          status.textContent = 'storing'
          return postJSON('/uploads/finalize', { token: ticket.token })
        })
      })
      .then(function () {
        if (stopped) return
        bar.value = 100
        status.textContent = '100 % · stored'
        row.classList.add('done')
        cancel.remove()
        refresh()
      })
      .catch(function (error) {
        if (!stopped) fail(row, 'Upload failed: ' + error.message + '.')
      })
  }

  function fail(row, message) {
    row.classList.add('failed')
    row.querySelector('progress').remove()
    var cancel = row.querySelector('.cancel')
    cancel.textContent = 'Dismiss'
    cancel.onclick = function () {
      row.remove()
    }
    row.querySelector('.status').textContent = message
  }

  // An error in words: the server's own message (text), never raw JSON or a stack.
  function explain(error) {
    var response = error.originalResponse
    if (!response) {
      return 'Upload failed: the server could not be reached.'
    }
    var status = response.getStatus()
    var text = (response.getBody() || '').trim()
    if (status === 413) {
      return 'Upload refused: ' + (text || 'the file is larger than the upload limit') + '.'
    }
    return 'Upload failed (' + status + ')' + (text ? ': ' + text : '') + '.'
  }

  var refreshing = null
  function refresh() {
    if (refreshing) {
      return refreshing
    }
    refreshing = fetch(window.location.href, { headers: { Accept: 'text/html' }, cache: 'no-store' })
      .then(function (response) {
        return response.text()
      })
      .then(function (text) {
        var page = new DOMParser().parseFromString(text, 'text/html')
        var fresh = page.getElementById('listing')
        if (fresh) {
          document.getElementById('listing').replaceWith(fresh)
        }
      })
      .finally(function () {
        refreshing = null
      })
    return refreshing
  }

  function say(message) {
    notice.textContent = message
    notice.hidden = !message
  }

  document.addEventListener('click', function (event) {
    var button = event.target.closest('#listing button')
    if (!button) {
      return
    }
    var row = button.closest('tr')
    if (button.classList.contains('copy')) {
      copyLink(button, row.dataset.url)
    } else if (button.classList.contains('delete')) {
      remove(button, row)
    }
  })

  function copyLink(button, url) {
    var done = function () {
      button.textContent = 'Copied'
      setTimeout(function () {
        button.textContent = 'Copy link'
      }, 1500)
    }
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(url).then(done, function () {
        window.prompt('Copy this link:', url)
      })
    } else {
      window.prompt('Copy this link:', url)
    }
  }

  function remove(button, row) {
    var id = row.dataset.id
    var path = id.split('/').map(encodeURIComponent).join('/')
    button.disabled = true
    say('')
    fetch(root + '/files/' + path + '?storage=' + encodeURIComponent(storage), { method: 'DELETE' })
      .then(function (response) {
        if (response.status === 204) {
          row.remove()
          return refresh()
        }
        return response
          .json()
          .catch(function () {
            return {}
          })
          .then(function (answer) {
            button.disabled = false
            say('Could not delete ' + id + ': ' + (answer.error || 'error ' + response.status) + '.')
          })
      })
      .catch(function () {
        button.disabled = false
        say('Could not delete ' + id + ': the server could not be reached.')
      })
  }
})()
