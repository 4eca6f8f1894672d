"""The page's own script and styles (static text: no data and no user strings in here).

Data reaches the page only as ``<script type="application/json">`` blocks (see
:func:`usm_geo.maps.escape.script_json`), which this code reads with ``JSON.parse``. Strings in
those blocks are HTML-escaped in Python already, so building tooltip HTML from them is safe; numbers
are formatted here. ``window.usmGeo`` keeps every layer by a key (``level:<name>``,
``gistar:<name>``, ``kde``, ``impact``; prefixed ``before/``/``after/`` in the side-by-side view)
so tests can count features through Leaflet (:func:`drawn`), whichever renderer draws them.
"""

JS = r"""
(function () {
  "use strict";
  var U = window.usmGeo = window.usmGeo || {layers: {}, maps: {}, mapOf: {}, legendLayers: {}, timings: {}};
  var cache = {}, SCALE = 1e5;
  // geometry blocks come delta-encoded in integer units of 1e-5 degree (usm_geo.maps.build.encode_geometries)
  function decodeGeometries(list) {
    var x = 0, y = 0, prev = null, table = [];
    function ring(r) {
      var o, k;
      x += r[1];
      y += r[2];
      if (r[0] === 2) {
        o = prev;
      } else if (r[0] === 3) {
        o = table[r[3]];
      } else {
        if (r[0] === 1) {
          o = new Array(prev.length);
          for (k = 0; k < prev.length; k++) { o[k] = prev[k] + r[3 + k]; }
        } else {
          o = [];
          var ax = 0, ay = 0;
          for (k = 3; k < r.length; k += 2) { ax += r[k]; ay += r[k + 1]; o.push(ax, ay); }
        }
        if (o.length <= 64) { table.push(o); }  // SHAPE_TABLE_MAX
      }
      prev = o;
      var out = [[x / SCALE, y / SCALE]];
      for (k = 0; k < o.length; k += 2) { out.push([(x + o[k]) / SCALE, (y + o[k + 1]) / SCALE]); }
      out.push([x / SCALE, y / SCALE]);
      return out;
    }
    return list.map(function (c) {
      if (c === null) { return null; }
      if (typeof c[0] === "number") { return [ring(c)]; }
      if (typeof c[0][0] === "number") { return c.map(ring); }
      return c.map(function (p) { return p.map(ring); });
    });
  }
  function closeTips(except) {
    Object.keys(U.layers).forEach(function (k) {
      var l = U.layers[k];
      if (l !== except && l.getTooltip && l.getTooltip() && l.isTooltipOpen()) { l.closeTooltip(); }
    });
    if (except) {  // an SVG layer's tooltip opened: the canvas layers' hover tooltip goes
      Object.keys(U.maps).forEach(function (k) {
        var h = U.maps[k]._usmHover;
        if (h && h.tooltip.isOpen && h.tooltip.isOpen()) { h.tooltip.close(); }
      });
    }
  }
  function data(id) {
    if (!Object.prototype.hasOwnProperty.call(cache, id)) {
      var d = JSON.parse(document.getElementById(id).textContent);
      if (d && d.enc === "d5") { d.g = decodeGeometries(d.g); delete d.enc; }
      cache[id] = d;
    }
    return cache[id];
  }
  U.data = data;

  function feature(c, i) {
    var multi = Array.isArray(c[0][0][0]);
    return {type: "Feature", properties: {i: i},
            geometry: {type: multi ? "MultiPolygon" : "Polygon", coordinates: c}};
  }
  function pane(map, name, z) {
    if (!name) { return "overlayPane"; }
    if (!map.getPane(name)) { map.createPane(name).style.zIndex = String(z || 400); }
    return name;
  }
  function num(x) {
    return Math.abs(x) >= 1000 ? x.toLocaleString("en-US", {maximumFractionDigits: 0}) : String(x);
  }
  function show(x, unit) {
    return (x === null || x === undefined) ? "" : num(x) + (unit || "");
  }
  function tip(s, g, i) {
    var id = g.ids[i], name = g.names ? g.names[i] : null, c = s.cls[i];
    var h = "<div class=\"usm-tip\"><b>" + (name === null || name === undefined ? id : name) + "</b>";
    if (name !== null && name !== undefined && name !== id) {
      h += " <span class=\"usm-tip-id\">" + id + "</span>";
    }
    if (s.value) {
      var v = s.value.v[i];
      h += "<div>" + s.title + ": <b>" + (v === null ? s.naLabel : show(v, s.value.unit)) + "</b></div>";
      if (s.value.lo && s.value.lo[i] !== null && s.value.hi[i] !== null) {
        h += "<div>" + s.value.interval + ": " + show(s.value.lo[i], s.value.unit) + " \u2013 " +
             show(s.value.hi[i], s.value.unit) + "</div>";
      }
    } else if (s.classLabels) {
      h += "<div>" + s.title + ": <b>" + (c >= 0 ? s.classLabels[c] : s.naLabel) + "</b></div>";
    }
    (s.fields || []).forEach(function (f) {
      var x = f[1][i];
      if (x !== null && x !== undefined) { h += "<div>" + f[0] + ": " + show(x, f[2]) + "</div>"; }
    });
    if (s.lines && s.lines[i]) { s.lines[i].forEach(function (t) { h += "<div>" + t + "</div>"; }); }
    if (s.flags && s.flags.f[i] > 0) { h += "<div class=\"usm-tip-flags\">" + s.flags.text[s.flags.f[i]] + "</div>"; }
    if (s.tp) { h += timeChart(data(s.tp), i); }
    return h + "</div>";
  }
  // a unit's time patterns (usm_geo.hotspots.time_patterns): hour × weekday heat grid and month-of-year bars,
  // each scaled to the unit's own busiest cell; a suppressed cell (null) is grey and holds no number
  var HEAT = ["#ffffb2", "#fed976", "#feb24c", "#fd8d3c", "#f03b20", "#bd0026"];
  var DAYS = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
  function timeChart(T, i) {
    var hw = T.hw[i], moy = T.moy[i], k, top = 0, mtop = 0, hidden = false, total = 0;
    if (!hw) { return ""; }
    for (k = 0; k < hw.length; k++) {
      if (hw[k] === null) { hidden = true; } else { total += hw[k]; if (hw[k] > top) { top = hw[k]; } }
    }
    for (k = 0; k < 12; k++) { if (moy[k] !== null && moy[k] > mtop) { mtop = moy[k]; } }
    var c = 6, x0 = 24, g = "<svg class=\"usm-tp-hw\" width=\"" + (x0 + 24 * c) + "\" height=\"" + (7 * c + 10) +
            "\" role=\"img\" aria-label=\"incidents by hour and weekday\">";
    for (var d = 0; d < 7; d++) {
      g += "<text x=\"0\" y=\"" + (d * c + c - 1) + "\" font-size=\"6\">" + DAYS[d] + "</text>";
      for (var hr = 0; hr < 24; hr++) {
        var v = hw[d * 24 + hr];
        var fill = v === null ? "#bdbdbd" : v === 0 ? "#ffffff" : HEAT[Math.min(5, Math.floor(6 * v / top))];
        g += "<rect class=\"usm-tp-cell\" data-w=\"" + d + "\" data-h=\"" + hr + "\" data-n=\"" +
             (v === null ? "s" : v) + "\" x=\"" + (x0 + hr * c) + "\" y=\"" + (d * c) + "\" width=\"" + (c - 1) +
             "\" height=\"" + (c - 1) + "\" fill=\"" + fill + "\" stroke=\"#ddd\" stroke-width=\"0.3\"></rect>";
      }
    }
    [0, 6, 12, 18].forEach(function (hr) {
      g += "<text x=\"" + (x0 + hr * c) + "\" y=\"" + (7 * c + 8) + "\" font-size=\"6\">" + hr + "h</text>";
    });
    g += "</svg>";
    var b = "<svg class=\"usm-tp-moy\" width=\"" + (12 * 9) + "\" height=\"30\" role=\"img\" aria-label=\"incidents by month of the year\">";
    for (k = 0; k < 12; k++) {
      var m = moy[k], hgt = m === null || mtop === 0 ? 0 : Math.max(1, Math.round(22 * m / mtop));
      b += "<rect class=\"usm-tp-month\" data-m=\"" + (k + 1) + "\" data-n=\"" + (m === null ? "s" : m) + "\" x=\"" +
           (k * 9) + "\" y=\"" + (22 - hgt) + "\" width=\"7\" height=\"" + hgt + "\" fill=\"" +
           (m === null ? "#bdbdbd" : "#ef8a62") + "\"></rect>";
      b += "<text x=\"" + (k * 9 + 1) + "\" y=\"29\" font-size=\"6\">" + "JFMAMJJASOND".charAt(k) + "</text>";
    }
    b += "</svg>";
    return "<div class=\"usm-tp\"><div class=\"usm-tp-title\">When (all years" +
           (hidden ? "; grey = suppressed" : ": " + num(total) + " incidents with a time") + ")</div>" + g +
           "<div class=\"usm-tp-title\">Month of the year</div>" + b + "</div>";
  }
  function style(s, i) {
    var c = s.cls[i], st = {}, k;
    for (k in s.style) { st[k] = s.style[k]; }
    if (s.classStyle && c >= 0 && s.classStyle[c]) { for (k in s.classStyle[c]) { st[k] = s.classStyle[c][k]; } }
    st.fillColor = c >= 0 ? s.colors[c] : s.na;
    return st;
  }
  function legendUpdate(id) {
    var el = document.getElementById(id), on = false;
    if (!el) { return; }
    (U.legendLayers[id] || []).forEach(function (x) { if (x[1].hasLayer(x[0])) { on = true; } });
    el.hidden = !on;
    var body = el.parentNode, any = false;
    if (!body) { return; }
    for (var k = 0; k < body.children.length; k++) {
      if (!body.children[k].hidden) { any = true; }
    }
    (body.classList.contains("usm-legend-body") ? body.parentNode : body).hidden = !any;
  }
  // the legend's button folds it to one line and back
  document.addEventListener("click", function (e) {
    var b = e.target;
    if (!b || !b.classList || !b.classList.contains("usm-legend-toggle")) { return; }
    var box = b.parentNode, open = box.classList.toggle("usm-collapsed") === false;
    b.setAttribute("aria-expanded", open ? "true" : "false");
  });
  function register(map, s, layer) {
    U.layers[s.key] = layer;
    U.mapOf[s.key] = map;
    if (s.legend) {
      (U.legendLayers[s.legend] = U.legendLayers[s.legend] || []).push([layer, map]);
      layer.on("add remove", function () { legendUpdate(s.legend); });
    }
    if (s.show) { layer.addTo(map); }
    return layer;
  }

  U.map = function (map, key) { U.maps[key] = map; return map; };

  // A layer's features are built when it is first shown: hidden layers cost nothing on opening.
  U.polygons = function (map, id) {
    var t0 = performance.now(), s = data(id), g = null;
    var p = pane(map, s.pane, s.z);
    var opts = {pane: p, style: function (f) { return style(s, f.properties.i); }};
    var layer = L.geoJSON(null, opts), filled = false;
    U.timings[s.key] = {parse: performance.now() - t0};
    function fill() {
      if (filled) { return; }
      filled = true;
      var t1 = performance.now(), feats = [];
      g = data(s.geom);
      for (var i = 0; i < g.g.length; i++) {
        if (g.g[i] !== null && s.cls[i] !== -2) { feats.push(feature(g.g[i], i)); }
      }
      layer.addData({type: "FeatureCollection", features: feats});
      U.timings[s.key].build = performance.now() - t1;
    }
    layer.on("add", fill);
    layer.fill = fill;
    layer.bindTooltip(function (l) { return tip(s, g, l.feature.properties.i); },
                      {sticky: true, className: "usm-tooltip", direction: "top", offset: [0, -8]});
    // one tooltip at a time: a layer switched off, or another layer's tooltip, closes this one
    layer.on("remove", function () { layer.closeTooltip(); });
    layer.on("tooltipopen", function () { closeTips(layer); });
    // gone at once, not after Leaflet's 200 ms fade, so a closed tooltip never lingers beside a new one
    layer.on("tooltipclose", function (e) { var el = e.tooltip && e.tooltip.getElement(); if (el) { L.DomUtil.remove(el); } });
    layer.on("mouseover", function (e) {
      var l = e.propagatedFrom || e.layer;
      if (l && l.setStyle) {
        l.setStyle({weight: (s.style.weight || 1) + 2, color: "#000000", opacity: 1});
        if (l.bringToFront) { l.bringToFront(); }
      }
    });
    layer.on("mouseout", function (e) {
      var l = e.propagatedFrom || e.layer;
      if (l) { layer.resetStyle(l); }
    });
    return register(map, s, layer);
  };

  // ---- big layers (more than CANVAS_THRESHOLD features): one canvas, drawn straight from the
  // arrays, classes batched per colour; hover by a grid index and an even-odd ring test. Leaflet's
  // own canvas renderer keeps an object per feature and spends seconds in garbage collection at
  // 50,000 cells; this one subclasses L.Canvas only for its sizing, panning and zoom animation.
  var R = 6378137, D2R = Math.PI / 180, MAXLAT = 85.0511287798;
  function mercX(lon) { return 256 * (0.5 + lon / 360); }
  function mercY(lat) {
    var s = Math.sin(Math.max(Math.min(MAXLAT, lat), -MAXLAT) * D2R);
    return 256 * (0.5 - Math.log((1 + s) / (1 - s)) / (4 * Math.PI));
  }
  function pack(s, g) {
    var n = g.g.length, xy = [], rs = [], fr = new Int32Array(n + 1), bb = new Float64Array(4 * n), vis = [];
    for (var i = 0; i < n; i++) {
      var c = g.g[i];
      fr[i] = rs.length;
      bb[4 * i] = Infinity;
      if (c === null || s.cls[i] === -2) { continue; }
      vis.push(i);
      var polys = Array.isArray(c[0][0][0]) ? c : [c], x0 = Infinity, y0 = Infinity, x1 = -Infinity, y1 = -Infinity;
      for (var p = 0; p < polys.length; p++) {
        for (var r = 0; r < polys[p].length; r++) {
          rs.push(xy.length / 2);
          var ring = polys[p][r];
          for (var v = 0; v < ring.length; v++) {
            var x = mercX(ring[v][0]), y = mercY(ring[v][1]);
            xy.push(x, y);
            if (x < x0) { x0 = x; } if (x > x1) { x1 = x; } if (y < y0) { y0 = y; } if (y > y1) { y1 = y; }
          }
        }
      }
      bb[4 * i] = x0; bb[4 * i + 1] = y0; bb[4 * i + 2] = x1; bb[4 * i + 3] = y1;
    }
    fr[n] = rs.length;
    rs.push(xy.length / 2);
    var byClass = {};
    vis.forEach(function (i) { var c = s.cls[i]; (byClass[c] = byClass[c] || []).push(i); });
    return {n: n, xy: new Float64Array(xy), rs: new Int32Array(rs), fr: fr, bb: bb, vis: vis, byClass: byClass};
  }
  function inside(P, i, x, y) {
    var c = false, xy = P.xy;
    for (var r = P.fr[i]; r < P.fr[i + 1]; r++) {
      var a = P.rs[r], b = P.rs[r + 1];
      for (var j = a, k = b - 1; j < b; k = j++) {
        var yi = xy[2 * j + 1], yk = xy[2 * k + 1];
        if ((yi > y) !== (yk > y) && x < (xy[2 * k] - xy[2 * j]) * (y - yi) / (yk - yi) + xy[2 * j]) { c = !c; }
      }
    }
    return c;
  }
  var BigLayer = null;  // made on first use: this script runs before Leaflet's is loaded
  function bigLayerClass() {
    BigLayer = BigLayer || L.Canvas.extend({
    initialize: function (s, g, options) {
      L.Canvas.prototype.initialize.call(this, options);
      this._s = s; this._g = g; this._P = null; this._grid = null; this.drawnCount = 0;
    },
    fill: function () {
      if (this._P) { return; }
      var t0 = performance.now();
      this._g = data(this._s.geom);
      var t1 = performance.now();
      this._P = pack(this._s, this._g);
      U.timings[this._s.key] = {parse: t1 - t0, pack: performance.now() - t1, draws: []};
    },
    onAdd: function () { this.fill(); L.Canvas.prototype.onAdd.call(this); hoverFor(this._map); },
    _onZoomEnd: function () {},
    _updatePaths: function () { if (!this._postponeUpdatePaths) { this._redrawBounds = null; this._redraw(); } },
    _draw: function () {
      var P = this._P, s = this._s, ctx = this._ctx, map = this._map;
      if (!P || !map || !this._bounds) { return; }
      var t0 = performance.now();
      var k = map.getZoomScale(this._zoom, 0), o = map.getPixelOrigin(), b = this._bounds;
      var vx0 = (b.min.x + o.x) / k, vy0 = (b.min.y + o.y) / k, vx1 = (b.max.x + o.x) / k, vy1 = (b.max.y + o.y) / k;
      var st = s.style, drawn = 0, all = [], self = this;
      function trace(i) {
        for (var r = P.fr[i]; r < P.fr[i + 1]; r++) {
          var a = P.rs[r], e = P.rs[r + 1];
          ctx.moveTo(P.xy[2 * a] * k - o.x, P.xy[2 * a + 1] * k - o.y);
          for (var j = a + 1; j < e; j++) { ctx.lineTo(P.xy[2 * j] * k - o.x, P.xy[2 * j + 1] * k - o.y); }
          ctx.closePath();
        }
      }
      // paths of at most CHUNK features: filling one path with tens of thousands of rings is
      // far slower (superlinear) in Chromium's software rasteriser than many small fills
      var CHUNK = 200;
      Object.keys(P.byClass).forEach(function (c) {
        var cs = (s.classStyle && s.classStyle[c]) || {}, list = P.byClass[c], m = 0;
        var filled = cs.fill !== false && st.fill !== false;
        ctx.globalAlpha = cs.fillOpacity !== undefined ? cs.fillOpacity : st.fillOpacity;
        ctx.fillStyle = Number(c) >= 0 ? s.colors[Number(c)] : s.na;
        ctx.beginPath();
        for (var q = 0; q < list.length; q++) {
          var i = list[q];
          if (P.bb[4 * i + 2] < vx0 || P.bb[4 * i] > vx1 || P.bb[4 * i + 3] < vy0 || P.bb[4 * i + 1] > vy1) { continue; }
          trace(i); all.push(i); drawn++;
          if (++m === CHUNK) { if (filled) { ctx.fill("evenodd"); } ctx.beginPath(); m = 0; }
        }
        if (m && filled) { ctx.fill("evenodd"); }
      });
      if (st.weight > 0 && all.length) {
        ctx.globalAlpha = st.opacity; ctx.strokeStyle = st.color; ctx.lineWidth = st.weight; ctx.lineJoin = "round";
        ctx.beginPath();
        for (var q2 = 0; q2 < all.length; q2++) {
          trace(all[q2]);
          if ((q2 + 1) % CHUNK === 0) { ctx.stroke(); ctx.beginPath(); }
        }
        ctx.stroke();
      }
      ctx.globalAlpha = 1;
      self.drawnCount = drawn;
      U.timings[s.key].draws.push([drawn, Math.round(performance.now() - t0)]);
    },
    hit: function (latlng) {
      var P = this._P;
      if (!P) { return -1; }
      var x = mercX(latlng.lng), y = mercY(latlng.lat);
      if (!this._grid) {
        var x0 = Infinity, y0 = Infinity, x1 = -Infinity, y1 = -Infinity;
        P.vis.forEach(function (i) {
          x0 = Math.min(x0, P.bb[4 * i]); y0 = Math.min(y0, P.bb[4 * i + 1]);
          x1 = Math.max(x1, P.bb[4 * i + 2]); y1 = Math.max(y1, P.bb[4 * i + 3]);
        });
        var G = Math.max(1, Math.ceil(Math.sqrt(P.vis.length / 4))), cells = [];
        var gx = (x1 - x0) / G || 1, gy = (y1 - y0) / G || 1;
        for (var c = 0; c < G * G; c++) { cells.push([]); }
        P.vis.forEach(function (i) {
          var a = Math.min(G - 1, Math.floor((P.bb[4 * i] - x0) / gx)), b2 = Math.min(G - 1, Math.floor((P.bb[4 * i + 2] - x0) / gx));
          var c0 = Math.min(G - 1, Math.floor((P.bb[4 * i + 1] - y0) / gy)), c1 = Math.min(G - 1, Math.floor((P.bb[4 * i + 3] - y0) / gy));
          for (var u = a; u <= b2; u++) { for (var w = c0; w <= c1; w++) { cells[w * G + u].push(i); } }
        });
        this._grid = {x0: x0, y0: y0, gx: gx, gy: gy, G: G, cells: cells};
      }
      var gr = this._grid, cx = Math.floor((x - gr.x0) / gr.gx), cy = Math.floor((y - gr.y0) / gr.gy);
      if (cx < 0 || cy < 0 || cx >= gr.G || cy >= gr.G) { return -1; }
      var cand = gr.cells[cy * gr.G + cx];
      for (var q = cand.length - 1; q >= 0; q--) {
        var i = cand[q];
        if (x >= P.bb[4 * i] && x <= P.bb[4 * i + 2] && y >= P.bb[4 * i + 1] && y <= P.bb[4 * i + 3] && inside(P, i, x, y)) {
          return i;
        }
      }
      return -1;
    },
    latLngs: function (i) {
      var c = this._g.g[i], polys = Array.isArray(c[0][0][0]) ? c : [c];
      return polys.map(function (p) { return p.map(function (r) { return r.map(function (v) { return [v[1], v[0]]; }); }); });
    },
    centre: function (i) {
      var P = this._P;
      return this._map.unproject(L.point((P.bb[4 * i] + P.bb[4 * i + 2]) / 2, (P.bb[4 * i + 1] + P.bb[4 * i + 3]) / 2), 0);
    },
    tipHtml: function (i) { return tip(this._s, this._g, i); },
    isBig: true
    });
    return BigLayer;
  }
  function hoverFor(map) {
    if (map._usmHover) { return; }
    var h = map._usmHover = {layer: null, i: -1,
      tooltip: L.tooltip({className: "usm-tooltip", direction: "top", offset: [0, -8], opacity: 0.95}),
      outline: L.polygon([], {interactive: false, color: "#000000", weight: 2.5, fill: false, pane: pane(map, "usm-hover", 610)})};
    function clear() {
      if (h.i >= 0) {
        map.removeLayer(h.outline);
        h.tooltip.close();
        if (h.tooltip.getElement()) { L.DomUtil.remove(h.tooltip.getElement()); }
      }
      h.layer = null; h.i = -1;
    }
    h.show = function (layer, i, latlng) {
      if (layer !== h.layer || i !== h.i) {
        h.layer = layer; h.i = i;
        h.outline.setLatLngs(layer.latLngs(i));
        if (!map.hasLayer(h.outline)) { h.outline.addTo(map); }
        h.tooltip.setContent(layer.tipHtml(i));
      }
      h.tooltip.setLatLng(latlng);
      if (!map.hasLayer(h.tooltip)) { closeTips(null); h.tooltip.openOn(map); }
    };
    function move(e) {
      var t = e.originalEvent && e.originalEvent.target;
      if (t && t.classList && t.classList.contains("leaflet-interactive")) { clear(); return; }
      var best = null, bi = -1;
      (map._usmBig || []).forEach(function (layer) {
        if (!layer._map || (best && best._s.z >= layer._s.z)) { return; }
        var i = layer.hit(e.latlng);
        if (i >= 0) { best = layer; bi = i; }
      });
      if (best) { h.show(best, bi, e.latlng); } else { clear(); }
    }
    map.on("mousemove click", move);
    map.on("mouseout", clear);
    map.on("layerremove", function (e) { if (e.layer === h.layer) { clear(); } });
  }
  U.bigPolygons = function (map, id) {
    var s = data(id), p = pane(map, s.pane, s.z);
    var Big = bigLayerClass(), layer = new Big(s, null, {pane: p, padding: 0.2});
    (map._usmBig = map._usmBig || []).push(layer);
    return register(map, s, layer);
  };

  U.image = function (map, id) {
    var s = data(id), p = pane(map, s.pane, s.z);
    var layer = L.imageOverlay(s.url, s.bounds, {opacity: s.opacity, pane: p, interactive: false,
                                                 className: "usm-image", alt: "density surface"});
    return register(map, s, layer);
  };

  U.control = function (map, id, position) {
    var el = document.getElementById(id);
    var C = L.Control.extend({onAdd: function () {
      L.DomEvent.disableClickPropagation(el);
      L.DomEvent.disableScrollPropagation(el);
      return el;
    }});
    new C({position: position}).addTo(map);
    return el;
  };

  U.layerControl = function (map, id) {
    var s = data(id), overlays = {};
    s.layers.forEach(function (x) { if (U.layers[x[0]]) { overlays[x[1]] = U.layers[x[0]]; } });
    var c = L.control.layers({}, overlays, {collapsed: false, position: "topright"}).addTo(map);
    c.getContainer().classList.add("usm-layers");
    return c;
  };

  U.sync = function (a, b) {
    // two maps kept in step: a view change on one is applied to the other at once (no animation);
    // `busy` stops the echo of the other map's own move event
    var A = U.maps[a], B = U.maps[b], busy = false;
    function follow(src, dst) {
      src.on("move zoom", function () {
        if (busy) { return; }
        busy = true;
        try { dst.setView(src.getCenter(), src.getZoom(), {animate: false}); } finally { busy = false; }
      });
    }
    follow(A, B);
    follow(B, A);
    B.setView(A.getCenter(), A.getZoom(), {animate: false});
    Object.keys(U.layers).forEach(function (k) {
      if (k.indexOf(a + "/") !== 0) { return; }
      var twin = b + "/" + k.slice(a.length + 1), L1 = U.layers[k], L2 = U.layers[twin];
      if (!L2) { return; }
      L1.on("add", function () { if (!B.hasLayer(L2)) { B.addLayer(L2); } });
      L1.on("remove", function () { if (B.hasLayer(L2)) { B.removeLayer(L2); } });
      L2.on("add", function () { if (!A.hasLayer(L1)) { A.addLayer(L1); } });
      L2.on("remove", function () { if (A.hasLayer(L1)) { A.removeLayer(L1); } });
    });
  };

  U.watchTiles = function (map, layer) {
    // a basemap that cannot load (offline, blocked) says so in a corner; the layers still draw
    var shown = false;
    layer.on("tileerror", function () {
      if (shown) { return; }
      shown = true;
      var C = L.Control.extend({onAdd: function () {
        var el = L.DomUtil.create("div", "usm-basemap-note");
        el.textContent = "basemap unavailable (offline)";
        return el;
      }});
      new C({position: "bottomright"}).addTo(map);
    });
  };

  U.fit = function (map, id) { map.fitBounds(data(id).bounds, {animate: false}); };

  // ---- for tests and benchmarks: counts through Leaflet, whatever the renderer (SVG or canvas)
  U.count = function (key) {
    var layer = U.layers[key], n = 0;
    if (!layer) { return -1; }
    if (layer.isBig) { layer.fill(); return layer._P.vis.length; }
    if (!layer.eachLayer) { return 1; }
    if (layer.fill) { layer.fill(); }
    layer.eachLayer(function () { n++; });
    return n;
  };
  U.drawn = function (key) {
    var layer = U.layers[key], n = 0;
    if (!layer || !layer._map) { return 0; }
    if (layer.isBig) { return layer.drawnCount; }
    if (!layer.eachLayer) { return layer._image && layer._image.complete ? 1 : 0; }
    layer.eachLayer(function (l) { if (l._map && l._parts && l._parts.length) { n++; } });
    return n;
  };
  // open the tooltip of feature i (its position in the layer's data) as a hover would
  U.openTip = function (key, i) {
    var layer = U.layers[key], map = U.mapOf[key], el;
    if (layer.isBig) {
      layer.fill();
      map._usmHover.show(layer, layer._P.vis[i], layer.centre(layer._P.vis[i]));
      el = map._usmHover.tooltip.getElement();
    } else {
      if (layer.fill) { layer.fill(); }
      var l = layer.getLayers()[i];
      layer._tooltip._source = l;
      layer.openTooltip(l.getCenter());
      el = layer._tooltip.getElement();
    }
    return el ? el.textContent : null;
  };
  // container pixel of a point inside feature i (for real mouse hovers in tests)
  U.pointIn = function (key, i) {
    var layer = U.layers[key], map = U.mapOf[key], ll;
    if (layer.isBig) { layer.fill(); ll = layer.centre(layer._P.vis[i]); }
    else { if (layer.fill) { layer.fill(); } ll = layer.getLayers()[i].getCenter(); }
    var p = map.latLngToContainerPoint(ll), r = map.getContainer().getBoundingClientRect();
    return [p.x + r.left, p.y + r.top];
  };
  U.ready = false;
})();
"""

CSS = """
.usm-basemap-note { background: rgba(255,255,255,.93); padding: 3px 8px; border-radius: 4px; font-size: 12px; color: #333; }
.usm-title { background: rgba(255,255,255,.93); padding: 5px 10px; border-radius: 4px;
  box-shadow: 0 1px 5px rgba(0,0,0,.35); font: 600 15px/1.3 system-ui, sans-serif; max-width: 46vw; }
.usm-title small { display: block; font-weight: 400; font-size: 12px; color: #333; }
.usm-legend { background: rgba(255,255,255,.93); padding: 6px 9px; border-radius: 4px;
  box-shadow: 0 1px 5px rgba(0,0,0,.35); font: 12px/1.35 system-ui, sans-serif; max-width: 310px;
  max-height: 55vh; overflow-y: auto; }
.usm-legend[hidden], .usm-legend-block[hidden] { display: none; }
.usm-legend-toggle { display: block; width: 100%; margin: 0 0 4px; padding: 1px 4px; border: 0; background: none;
  font: 600 11px system-ui, sans-serif; text-align: left; cursor: pointer; color: #333; }
.usm-legend-toggle::after { content: " \\25BE"; }
.usm-legend.usm-collapsed .usm-legend-toggle { margin: 0; }
.usm-legend.usm-collapsed .usm-legend-toggle::after { content: " \\25B8"; }
.usm-legend.usm-collapsed .usm-legend-body { display: none; }
.usm-legend-block:not([hidden]) ~ .usm-legend-block:not([hidden]) { margin-top: 7px; padding-top: 6px; border-top: 1px solid #ccc; }
.usm-legend-title { font-weight: 600; }
.usm-legend-sub, .usm-legend-note { color: #333; }
.usm-legend-note { font-size: 11px; margin-top: 3px; }
.usm-legend-row { display: flex; align-items: center; gap: 6px; }
.usm-swatch { display: inline-block; flex: none; width: 18px; height: 12px; border: 1px solid #666; }
.usm-tooltip { font: 12px/1.35 system-ui, sans-serif; max-width: 320px; white-space: normal; }
.usm-tip-id { color: #555; font-size: 11px; }
.usm-tip-flags { color: #7a3300; font-style: italic; }
.usm-tp { margin-top: 4px; } .usm-tp svg { display: block; } .usm-tp-title { font-size: 11px; color: #333; margin-top: 2px; }
.usm-layers { font: 12px/1.4 system-ui, sans-serif; }
"""
