// mamamia review: keyboard rating. 1-4 rate (saved, then the next unrated case opens), n/p next/previous,
// c focuses the comment, Escape leaves it. No framework, nothing fetched from elsewhere.
(function () {
  "use strict";
  var section = document.getElementById("case");
  if (!section) { return; }
  var SCORES = ["good", "acceptable", "poor", "missed"];
  var status = document.getElementById("status");
  var comment = document.getElementById("comment");
  var busy = false;

  function say(text) { status.textContent = text; }

  function rate(score) {
    if (busy) { return; }
    busy = true;
    say("saving " + score + " ...");
    var body = JSON.stringify({
      patient_id: section.dataset.patientId,
      score: score,
      comment: comment ? comment.value : "",
      mask_sha256: section.dataset.maskSha256
    });
    fetch("/api/ratings", {method: "POST", headers: {"Content-Type": "application/json"}, body: body,
                           credentials: "same-origin"})
      .then(function (resp) {
        return resp.json().then(function (data) { return {ok: resp.ok, data: data}; });
      })
      .then(function (res) {
        if (!res.ok) { busy = false; say("not saved: " + (res.data.error || "server error")); return; }
        say("saved " + res.data.score);
        window.location.assign(res.data.next);
      })
      .catch(function () { busy = false; say("not saved: the server did not answer; try again"); });
  }

  Array.prototype.forEach.call(document.querySelectorAll("button.score"), function (b) {
    b.addEventListener("click", function () { rate(b.dataset.score); });
  });

  document.addEventListener("keydown", function (ev) {
    if (ev.ctrlKey || ev.metaKey || ev.altKey) { return; }
    var t = ev.target;
    if (t && (t.tagName === "TEXTAREA" || t.tagName === "INPUT" || t.tagName === "SELECT")) {
      if (ev.key === "Escape") { t.blur(); }
      return;
    }
    var k = ev.key;
    if (k >= "1" && k <= "4") { ev.preventDefault(); rate(SCORES[Number(k) - 1]); }
    else if (k === "n" && section.dataset.next) { window.location.assign(section.dataset.next); }
    else if (k === "p" && section.dataset.prev) { window.location.assign(section.dataset.prev); }
    else if (k === "c" && comment) { ev.preventDefault(); comment.focus(); }
  });
}());
