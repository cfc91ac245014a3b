// Live output of a running job: fetch what is new every second, append it as text (never as
// HTML), and reload once the job has ended so the page shows its final state.
(function () {
  "use strict";
  var facts = document.getElementById("job");
  if (!facts) { return; }
  var url = facts.getAttribute("data-live");
  var out = document.getElementById("stdout"), err = document.getElementById("stderr");
  // Offsets in the server's characters (code points), not in JavaScript's UTF-16 units.
  var outLength = Number(facts.getAttribute("data-stdout-length"));
  var errLength = Number(facts.getAttribute("data-stderr-length"));
  function follow(pre, text) {
    if (!text) { return; }
    var atEnd = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
    pre.appendChild(document.createTextNode(text));
    if (atEnd) { pre.scrollTop = pre.scrollHeight; }
  }
  function tick() {
    fetch(url + "?stdout=" + outLength + "&stderr=" + errLength, {credentials: "same-origin"})
      .then(function (r) { if (!r.ok) { throw new Error(r.status); } return r.json(); })
      .then(function (live) {
        if (live.reset) { out.textContent = ""; err.textContent = ""; }
        follow(out, live.stdout); follow(err, live.stderr);
        outLength = live.stdout_length; errLength = live.stderr_length;
        document.getElementById("elapsed").textContent = live.elapsed;
        if (live.chart) { document.getElementById("chart").innerHTML = live.chart; }
        if (live.status !== "running") { window.location.reload(); return; }
        window.setTimeout(tick, 1000);
      })
      .catch(function () { window.setTimeout(tick, 5000); });
  }
  window.setTimeout(tick, 1000);
})();
