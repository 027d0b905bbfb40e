// index.html: sort by clicking a header (numbers numerically, by data-sort when a cell has one) and
// filter rows. Packaged as is and allowed by its hash in the page's Content-Security-Policy.
(function () {
  "use strict";
  var table = document.getElementById("images");
  var body = table.tBodies[0];
  var heads = table.querySelectorAll("th");
  function key(row, col) {
    var cell = row.cells[col];
    return cell.hasAttribute("data-sort") ? cell.getAttribute("data-sort") : cell.textContent;
  }
  heads.forEach(function (th, col) {
    th.style.cursor = "pointer";
    th.tabIndex = 0;
    function sort() {
      var asc = th.getAttribute("aria-sort") !== "ascending";
      heads.forEach(function (h) { h.removeAttribute("aria-sort"); });
      th.setAttribute("aria-sort", asc ? "ascending" : "descending");
      var rows = Array.prototype.slice.call(body.rows);
      rows.forEach(function (r, i) { r.originalIndex = i; });
      rows.sort(function (a, b) {
        var x = key(a, col), y = key(b, col);
        var nx = parseFloat(x), ny = parseFloat(y);
        var c = (!isNaN(nx) && !isNaN(ny)) ? nx - ny : x.localeCompare(y);
        if (c === 0) { return a.originalIndex - b.originalIndex; }
        return asc ? c : -c;
      });
      rows.forEach(function (r) { body.appendChild(r); });
    }
    th.addEventListener("click", sort);
    th.addEventListener("keydown", function (e) { if (e.key === "Enter") { sort(); } });
  });
  var filters = document.getElementById("filters");
  var checks = filters.querySelectorAll("input[type=checkbox]");
  var account = document.getElementById("f-account");
  var shown = document.getElementById("shown");
  function apply() {
    var n = 0;
    Array.prototype.forEach.call(body.rows, function (row) {
      var ok = true;
      checks.forEach(function (c) {
        if (c.checked && row.getAttribute("data-" + c.value) !== "1") { ok = false; }
      });
      if (account && account.value) {
        ok = ok && row.getAttribute("data-account").split(" ").indexOf(account.value) >= 0;
      }
      row.hidden = !ok;
      if (ok) { n += 1; }
    });
    shown.textContent = "showing " + n + " of " + body.rows.length;
  }
  checks.forEach(function (c) { c.addEventListener("change", apply); });
  if (account) { account.addEventListener("change", apply); }
  filters.hidden = false;
  apply();
})();
