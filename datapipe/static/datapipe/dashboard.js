/* The datapipe landing page: refreshes the table of runs in progress from the admin's
   JSON view (data-url) every data-every seconds, without reloading the page.
   A static file, so that the page runs under a policy without inline scripts; the data
   is written with textContent only. */
(function () {
  "use strict";
  var table = document.getElementById("datapipe-live");
  if (!table || !window.fetch) {
    return;
  }
  var every = (parseInt(table.getAttribute("data-every"), 10) || 5) * 1000;
  var body = table.tBodies[0];

  function cell(row, text) {
    var td = document.createElement("td");
    td.textContent = text;
    row.appendChild(td);
    return td;
  }

  function runRow(run, urlOfZero) {
    var row = document.createElement("tr");
    row.setAttribute("data-run", run.id);
    var link = document.createElement("a");
    link.href = urlOfZero.replace("/0/", "/" + run.id + "/");
    link.textContent = "#" + run.id;
    cell(row, "").appendChild(link);
    cell(row, run.pipeline);
    var badge = document.createElement("span");
    badge.className = "datapipe-status datapipe-status-" + run.kind;
    badge.textContent = run.status;
    cell(row, "").appendChild(badge);
    var progress = cell(row, "");
    if (run.distributed && run.fraction !== null) {
      var bar = document.createElement("progress");
      bar.max = 1;
      bar.value = run.fraction;
      progress.appendChild(bar);
      progress.appendChild(document.createTextNode(" "));
    }
    progress.appendChild(document.createTextNode(run.progress));
    [run.processed, run.errored, run.rate, run.eta, run.started].forEach(function (text) {
      cell(row, String(text));
    });
    return row;
  }

  function show(data) {
    var rows = document.createDocumentFragment();
    data.runs.forEach(function (run) {
      rows.appendChild(runRow(run, data.url));
    });
    if (!data.runs.length) {
      var empty = document.createElement("tr");
      empty.className = "datapipe-empty";
      cell(empty, "No run in progress.").colSpan = 9;
      rows.appendChild(empty);
    }
    body.replaceChildren(rows);
    table.setAttribute("data-updated", data.at);
  }

  function poll() {
    fetch(table.getAttribute("data-url"), {
      credentials: "same-origin",
      headers: {"Accept": "application/json"}
    }).then(function (response) {
      if (!response.ok) {
        throw new Error("HTTP " + response.status);
      }
      return response.json();
    }).then(show).catch(function () {
      table.setAttribute("data-updated", "failed");
    }).then(function () {
      window.setTimeout(poll, every);
    });
  }

  window.setTimeout(poll, every);
}());
