// roomsim run explorer. Reads the JSON block `#data` written by analysis/src/explorer.rs:
// events (layer, pos, prev and auth indices, verdict class), their PDUs, decisions
// [event, server, decision, t_us, stage, reason], faults, forward extremities. Draws on a canvas.
"use strict";
(function () {
  var errors = 0;
  window.addEventListener("error", function () {
    errors += 1;
    document.body.setAttribute("data-js-errors", String(errors));
  });
  var D = JSON.parse(document.getElementById("data").textContent);
  var E = D.events, N = E.length, GX = 30, GY = 40, R = 9;
  var $ = function (id) { return document.getElementById(id); };
  var canvas = $("dag"), ctx = canvas.getContext("2d");
  var VERDICT_COLOUR = { accepted: "#5cb85c", soft_failed: "#f0a030", rejected: "#d9534f", outlier: "#9b6bd3",
    dropped: "#9aa0a6", unknown: "#8fb3c9" };
  var VERDICT_NAME = { accepted: "accepted", soft_failed: "soft-failed on some server", rejected: "rejected",
    outlier: "outlier only", dropped: "dropped", unknown: "no decision" };
  var TYPE_COLOUR = { "m.room.create": "#1f77b4", "m.room.member": "#2ca02c", "m.room.power_levels": "#d62728",
    "m.room.join_rules": "#9467bd", "m.room.message": "#8c8c8c", "m.room.name": "#17becf", "m.room.topic": "#17becf",
    "m.room.history_visibility": "#bcbd22", "m.room.third_party_invite": "#e377c2", "m.room.redaction": "#8c564b",
    "m.room.server_acl": "#ff7f0e" };
  var RANK = { rejected: 5, soft_failed: 4, accepted: 3, outlier: 2, dropped: 1 };
  var NOT_HELD = "#e9ebee";

  // Geometry.
  var X = new Float64Array(N), Y = new Float64Array(N);
  var children = [], i, j;
  for (i = 0; i < N; i++) children.push([]);
  for (i = 0; i < N; i++) {
    var e = E[i];
    X[i] = (e.pos - (D.widths[e.layer] - 1) / 2) * GX;
    Y[i] = e.layer * GY;
    for (j = 0; j < e.prev.length; j++) children[e.prev[j]].push(i);
  }
  var byLayer = [];
  for (i = 0; i < D.layers; i++) byLayer.push([]);
  for (i = 0; i < N; i++) byLayer[E[i].layer].push(i);
  for (i = 0; i < byLayer.length; i++) byLayer[i].sort(function (a, b) { return X[a] - X[b]; });
  var byId = {};
  for (i = 0; i < N; i++) byId[E[i].id] = i;
  var decisionsOf = [];
  for (i = 0; i < N; i++) decisionsOf.push([]);
  D.decisions.forEach(function (d, k) { decisionsOf[d[0]].push(k); });
  var forwardAll = {};
  D.forward.forEach(function (k) { forwardAll[k] = true; });

  // View state.
  var view = { s: 1, ox: 0, oy: 0 }, W = 0, H = 0, dpr = window.devicePixelRatio || 1;
  var selected = -1, matches = null, colourBy = "verdict", server = -1;
  var tEnd = D.t_end_us || 0, tNow = tEnd;
  var status = new Array(N), fwd = forwardAll;

  function fmtT(us) { return (us / 1e6).toFixed(3) + " s"; }
  function short(id) { return id.length > 12 ? id.slice(0, 12) + "…" : id; }
  function esc(s) {
    return String(s).replace(/[&<>"]/g, function (c) { return { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" }[c]; });
  }
  function typeColour(t) {
    if (TYPE_COLOUR[t]) return TYPE_COLOUR[t];
    var h = 0;
    for (var k = 0; k < t.length; k++) h = (h * 31 + t.charCodeAt(k)) % 360;
    return "hsl(" + h + ",55%,55%)";
  }

  // Status of every event at tNow: for one server, its last decision by then; for all servers,
  // the strongest verdict any server reached by then (null: no server held it yet).
  function recompute() {
    var k, d;
    for (k = 0; k < N; k++) status[k] = D.decisions.length ? null : E[k].v;
    for (k = 0; k < D.decisions.length; k++) {
      d = D.decisions[k];
      if (d[3] > tNow) continue;
      if (server >= 0) {
        if (d[1] === server) status[d[0]] = d[2];
      } else if (!status[d[0]] || (RANK[d[2]] || 0) > (RANK[status[d[0]]] || 0)) {
        status[d[0]] = d[2];
      }
    }
    if (server < 0 && tNow >= tEnd) {
      fwd = forwardAll;
    } else {
      // Forward extremities: accepted events without an accepted child.
      fwd = {};
      for (k = 0; k < N; k++) {
        if (status[k] !== "accepted") continue;
        var leaf = true;
        for (var c = 0; c < children[k].length; c++) if (status[children[k][c]] === "accepted") { leaf = false; break; }
        if (leaf) fwd[k] = true;
      }
    }
    serverPanel();
  }

  function fill(k) {
    var st = status[k];
    if (!st) return NOT_HELD;
    if (colourBy === "type") return typeColour(E[k].type);
    return VERDICT_COLOUR[st] || VERDICT_COLOUR.unknown;
  }

  function resize() {
    var r = canvas.parentNode.getBoundingClientRect();
    W = Math.max(100, r.width); H = Math.max(100, r.height);
    canvas.width = Math.round(W * dpr); canvas.height = Math.round(H * dpr);
  }
  function fit() {
    var minX = Infinity, maxX = -Infinity, minY = 0, maxY = Math.max(0, D.layers - 1) * GY;
    for (var k = 0; k < N; k++) { if (X[k] < minX) minX = X[k]; if (X[k] > maxX) maxX = X[k]; }
    if (!N) { minX = 0; maxX = 0; }
    var bw = maxX - minX + 4 * R, bh = maxY - minY + 4 * R;
    view.s = Math.min(W / bw, H / bh, 2.5);
    view.ox = W / 2 - view.s * (minX + maxX) / 2;
    view.oy = H / 2 - view.s * (minY + maxY) / 2;
  }
  function sx(k) { return view.ox + view.s * X[k]; }
  function sy(k) { return view.oy + view.s * Y[k]; }

  function draw() {
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, W, H);
    var r = R * view.s, m = Math.max(r, 2), k, c, p;
    var visible = function (q) { var x = sx(q), y = sy(q); return x >= -m && x <= W + m && y >= -m && y <= H + m; };
    // Prev edges, child to parent.
    ctx.lineWidth = Math.min(1.2, Math.max(0.3, view.s));
    ctx.strokeStyle = "rgba(90,100,115,0.35)";
    ctx.beginPath();
    for (k = 0; k < N; k++) {
      var e = E[k];
      for (c = 0; c < e.prev.length; c++) {
        p = e.prev[c];
        var y1 = sy(k), y2 = sy(p);
        if ((y1 < 0 && y2 < 0) || (y1 > H && y2 > H)) continue;
        ctx.moveTo(sx(k), y1); ctx.lineTo(sx(p), y2);
      }
    }
    ctx.stroke();
    if (selected >= 0) {
      var s = E[selected];
      ctx.lineWidth = 2; ctx.strokeStyle = "#1f5fbf"; ctx.beginPath();
      s.prev.forEach(function (q) { ctx.moveTo(sx(selected), sy(selected)); ctx.lineTo(sx(q), sy(q)); });
      ctx.stroke();
      ctx.setLineDash([5, 4]); ctx.strokeStyle = "#a0522d"; ctx.beginPath();
      s.auth.forEach(function (q) { ctx.moveTo(sx(selected), sy(selected)); ctx.lineTo(sx(q), sy(q)); });
      ctx.stroke(); ctx.setLineDash([]);
    }
    // Nodes, batched by colour.
    var groups = {}, drawn = 0;
    for (k = 0; k < N; k++) {
      if (!visible(k)) continue;
      drawn++;
      var f = fill(k);
      (groups[f] || (groups[f] = [])).push(k);
    }
    Object.keys(groups).forEach(function (f) {
      ctx.fillStyle = f;
      var g = groups[f];
      if (r < 2) {
        var w = Math.max(1.5, 2 * r);
        for (var q = 0; q < g.length; q++) ctx.fillRect(sx(g[q]) - w / 2, sy(g[q]) - w / 2, w, w);
      } else {
        ctx.beginPath();
        for (var q2 = 0; q2 < g.length; q2++) { ctx.moveTo(sx(g[q2]) + r, sy(g[q2])); ctx.arc(sx(g[q2]), sy(g[q2]), r, 0, 2 * Math.PI); }
        ctx.fill();
      }
    });
    // Rings: verdict when coloured by type, forward extremities, search matches, selection.
    var ring = function (q, colour, width, extra) {
      ctx.strokeStyle = colour; ctx.lineWidth = width; ctx.beginPath();
      ctx.arc(sx(q), sy(q), Math.max(r, 2) + extra, 0, 2 * Math.PI); ctx.stroke();
    };
    for (k = 0; k < N; k++) {
      if (!visible(k)) continue;
      if (colourBy === "type" && status[k] && status[k] !== "accepted") ring(k, VERDICT_COLOUR[status[k]] || "#888", 2.5, 1);
      if (fwd[k]) ring(k, "#111", 2, 3);
      if (matches && matches[k]) ring(k, "#e6b800", 3, 5);
    }
    if (selected >= 0) ring(selected, "#1f5fbf", 3, 6);
    if (r >= 11) {
      ctx.fillStyle = "#1f2328"; ctx.font = "11px system-ui, sans-serif"; ctx.textBaseline = "middle";
      for (k = 0; k < N; k++) {
        if (!visible(k)) continue;
        var t = E[k].type.replace(/^m\.room\./, "") + (E[k].sk !== undefined && E[k].sk !== "" ? " " + E[k].sk : "");
        ctx.fillText(t + " · " + E[k].sender, sx(k) + r + 4, sy(k));
      }
    }
    document.body.setAttribute("data-events-drawn", String(drawn));
  }

  function hit(px, py) {
    var wy = (py - view.oy) / view.s, wx = (px - view.ox) / view.s;
    var l = Math.round(wy / GY), best = -1, bd = Infinity;
    for (var dl = -1; dl <= 1; dl++) {
      var row = byLayer[l + dl];
      if (!row) continue;
      for (var q = 0; q < row.length; q++) {
        var k = row[q], d = Math.hypot(X[k] - wx, Y[k] - wy);
        if (d < bd) { bd = d; best = k; }
      }
    }
    return bd * view.s <= Math.max(R * view.s, 6) + 2 ? best : -1;
  }

  function link(k) {
    return '<a data-k="' + k + '" title="' + esc(E[k].id) + '"><span class="id">' + esc(short(E[k].id)) + "</span></a> " +
      esc(E[k].type.replace(/^m\.room\./, "")) + (E[k].sk !== undefined ? " <code>" + esc(E[k].sk) + "</code>" : "");
  }
  function links(list) {
    if (!list.length) return '<p class="note">none</p>';
    return '<ul class="links">' + list.map(function (k) { return "<li>" + link(k) + "</li>"; }).join("") + "</ul>";
  }

  function detail() {
    var box = $("detail");
    if (selected < 0) return;
    var e = E[selected], h = [];
    h.push("<h2>" + esc(e.type) + (e.sk !== undefined ? " <code>" + esc(e.sk) + "</code>" : "") + "</h2>");
    h.push('<p><span class="id">' + esc(e.id) + "</span><br>sender <code>" + esc(e.sender) + "</code> · depth " +
      e.depth + " · layer " + e.layer + " · " + esc(VERDICT_NAME[e.v] || e.v) + "</p>");
    if (e.judged) {
      var j = e.judged;
      h.push("<p>dag verify: <b>" + esc(j.verdict) + "</b>" + (j.stage ? " at stage <code>" + esc(j.stage) + "</code>" : "") +
        (j.reason ? ": " + esc(j.reason) : "") + "</p>");
    }
    var ds = decisionsOf[selected];
    h.push('<h3>Decisions (' + ds.length + ")</h3>");
    if (ds.length) {
      h.push('<table id="decisions"><thead><tr><th>server</th><th>decision</th><th>stage</th><th>reason</th><th>t</th></tr></thead><tbody>');
      ds.forEach(function (k) {
        var d = D.decisions[k];
        h.push("<tr><td>" + esc(D.servers[d[1]]) + '</td><td class="' + esc(d[2]) + '">' + esc(d[2]) + "</td><td>" +
          esc(d[4] || "") + "</td><td>" + esc(d[5] || "") + '</td><td class="num">' + fmtT(d[3]) + "</td></tr>");
      });
      h.push("</tbody></table>");
    } else {
      h.push('<p class="note">' + (D.decisions.length ? "No server logged a decision on this event." :
        "No server decisions in this file (a DAG judged by dag verify).") + "</p>");
    }
    h.push("<h3>Prev events (" + e.prev.length + ")</h3>" + links(e.prev));
    h.push("<h3>Auth events (" + e.auth.length + ")</h3>" + links(e.auth));
    h.push("<h3>Children (" + children[selected].length + ")</h3>" + links(children[selected]));
    h.push("<h3>JSON</h3><pre>" + esc(JSON.stringify(D.pdus[selected], null, 2)) + "</pre>");
    box.innerHTML = h.join("");
  }

  function serverPanel() {
    var box = $("server-view"), k, counts = {}, held = 0;
    for (k = 0; k < N; k++) if (status[k]) { held++; counts[status[k]] = (counts[status[k]] || 0) + 1; }
    var who = server >= 0 ? "Server <b>" + esc(D.servers[server]) + "</b>" : "All servers (union)";
    var when = D.decisions.length ? " at " + fmtT(tNow) : "";
    var parts = Object.keys(counts).sort().map(function (c) { return counts[c] + " " + c; });
    var f = Object.keys(fwd).map(Number).sort(function (a, b) { return a - b; });
    box.innerHTML = "<h2>" + who + when + "</h2><p>" + (server >= 0 ? "holds " : "") + held + " of " + N +
      " events" + (parts.length ? " (" + esc(parts.join(", ")) + ")" : "") + '</p><h3 id="fwd-title">Forward extremities (' +
      f.length + ")</h3>" + links(f.slice(0, 50)) + (f.length > 50 ? '<p class="note">and ' + (f.length - 50) + " more</p>" : "");
  }

  function select(k, centre) {
    selected = k;
    if (k >= 0 && centre) {
      var x = sx(k), y = sy(k);
      if (x < 0 || x > W || y < 0 || y > H) { view.ox += W / 2 - x; view.oy += H / 2 - y; }
    }
    detail();
    if (k >= 0 && history.replaceState) history.replaceState(null, "", "#event=" + encodeURIComponent(E[k].id));
    draw();
  }

  function search(q) {
    q = q.trim().toLowerCase();
    if (!q) { matches = null; $("search-result").textContent = ""; draw(); return -1; }
    matches = {};
    var n = 0, first = -1;
    for (var k = 0; k < N; k++) {
      var e = E[k];
      if (e.id.toLowerCase().indexOf(q) >= 0 || e.sender.toLowerCase().indexOf(q) >= 0 || e.type.toLowerCase().indexOf(q) >= 0) {
        matches[k] = true; n++; if (first < 0) first = k;
      }
    }
    $("search-result").textContent = n + " match" + (n === 1 ? "" : "es") + (n ? " (Enter: first)" : "");
    draw();
    return first;
  }

  function faultStrip() {
    var box = $("faults"), open = {}, bands = [];
    if (!tEnd) return;
    D.faults.forEach(function (f) {
      if (f.start) open[f.fault] = f;
      else {
        var s = open[f.fault];
        bands.push({ a: s ? s.t_us : 0, b: f.t_us, what: (s ? s.what : "") + (s ? " → " : "") + f.what, n: f.fault });
        delete open[f.fault];
      }
    });
    Object.keys(open).forEach(function (n) { bands.push({ a: open[n].t_us, b: tEnd, what: open[n].what, n: Number(n) }); });
    // Overlapping bands go on separate lanes.
    bands.sort(function (x, y) { return x.a - y.a || x.n - y.n; });
    var lanes = [];
    bands.forEach(function (b) {
      var lane = 0;
      while (lanes[lane] !== undefined && lanes[lane] > b.a) lane++;
      lanes[lane] = b.b; b.lane = lane;
    });
    box.style.height = (Math.max(1, lanes.length) * 15 + 4) + "px";
    box.innerHTML = bands.map(function (b) {
      var l = 100 * b.a / tEnd, w = Math.max(0.3, 100 * (b.b - b.a) / tEnd);
      return '<div class="fault" style="top:' + (2 + 15 * b.lane) + "px;height:14px;left:" + l + "%;width:" + w + '%" title="fault ' + b.n + ": " + esc(b.what) + " " +
        fmtT(b.a) + "–" + fmtT(b.b) + '">' + esc(b.what) + "</div>";
    }).join("") + '<div class="now" id="now"></div>';
    box.setAttribute("data-faults", String(bands.length));
    box.addEventListener("click", function (ev) {
      var r = box.getBoundingClientRect();
      setTime(Math.round(tEnd * (ev.clientX - r.left) / r.width));
    });
  }

  function setTime(t) {
    tNow = Math.max(0, Math.min(tEnd, t));
    $("slider").value = String(tEnd ? Math.round(1000 * tNow / tEnd) : 1000);
    $("time-label").textContent = fmtT(tNow) + " of " + fmtT(tEnd);
    var now = $("now");
    if (now) now.style.left = (tEnd ? 100 * tNow / tEnd : 100) + "%";
    recompute(); draw();
  }

  function legend() {
    var used = {};
    E.forEach(function (e) { used[e.v] = true; });
    var h = Object.keys(VERDICT_COLOUR).filter(function (v) { return used[v]; }).map(function (v) {
      return '<i style="background:' + VERDICT_COLOUR[v] + '"></i>' + esc(VERDICT_NAME[v]);
    });
    h.push('<i style="background:' + NOT_HELD + ';border:1px solid #bbb"></i>not held yet');
    h.push('<i style="background:#fff;border:2px solid #111"></i>forward extremity');
    $("legend").innerHTML = h.join("");
  }

  // Wiring.
  D.servers.forEach(function (s, k) {
    var o = document.createElement("option"); o.value = String(k); o.textContent = s; $("server").appendChild(o);
  });
  if (!D.decisions.length) { $("time").style.display = "none"; $("server").parentNode.style.display = "none"; }
  $("server").addEventListener("change", function () { server = this.value === "" ? -1 : Number(this.value); recompute(); draw(); });
  $("colour").addEventListener("change", function () { colourBy = this.value; draw(); });
  $("slider").addEventListener("input", function () { setTime(Math.round(tEnd * Number(this.value) / 1000)); });
  $("fit").addEventListener("click", function () { fit(); draw(); });
  $("search").addEventListener("input", function () { search(this.value); });
  $("search").addEventListener("keydown", function (ev) {
    if (ev.key === "Enter") { var k = search(this.value); if (k >= 0) select(k, true); }
  });
  document.addEventListener("click", function (ev) {
    var a = ev.target.closest ? ev.target.closest("a[data-k]") : null;
    if (a) { ev.preventDefault(); select(Number(a.getAttribute("data-k")), true); }
  });
  canvas.addEventListener("wheel", function (ev) {
    ev.preventDefault();
    var r = canvas.getBoundingClientRect(), px = ev.clientX - r.left, py = ev.clientY - r.top;
    var f = Math.exp(-ev.deltaY * 0.0015);
    view.ox = px - (px - view.ox) * f; view.oy = py - (py - view.oy) * f; view.s *= f;
    draw();
  }, { passive: false });
  var drag = null;
  canvas.addEventListener("mousedown", function (ev) { drag = { x: ev.clientX, y: ev.clientY, moved: false }; });
  window.addEventListener("mousemove", function (ev) {
    if (!drag) return;
    var dx = ev.clientX - drag.x, dy = ev.clientY - drag.y;
    if (Math.abs(dx) + Math.abs(dy) > 2) drag.moved = true;
    if (drag.moved) { view.ox += dx; view.oy += dy; drag.x = ev.clientX; drag.y = ev.clientY; draw(); }
  });
  window.addEventListener("mouseup", function (ev) {
    if (drag && !drag.moved && ev.target === canvas) {
      var r = canvas.getBoundingClientRect();
      var k = hit(ev.clientX - r.left, ev.clientY - r.top);
      if (k >= 0) select(k, false);
    }
    drag = null;
  });
  window.addEventListener("resize", function () { resize(); draw(); });
  function fromHash() {
    var m = /(?:^#|&)event=([^&]*)/.exec(location.hash);
    if (m) { var k = byId[decodeURIComponent(m[1])]; if (k !== undefined) select(k, true); }
  }
  window.addEventListener("hashchange", fromHash);

  resize(); fit(); legend(); faultStrip();
  var sm = /(?:^#|&)server=([^&]*)/.exec(location.hash);
  if (sm) { var si = D.servers.indexOf(decodeURIComponent(sm[1])); if (si >= 0) { server = si; $("server").value = String(si); } }
  var tm = /(?:^#|&)t=([0-9.]+)/.exec(location.hash);
  setTime(tm ? Math.round(Number(tm[1]) * 1e6) : tEnd);
  fromHash();
  document.body.setAttribute("data-events", String(N));
  document.body.setAttribute("data-ready", "1");
})();
