// Building DOM nodes without innerHTML: every value from the API lands in
// the page as text, never as markup.

// h('a', {href: '#/x', class: 'c', onclick: f}, 'text', child, [more]).
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === 'class') el.className = v;
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (v === true) el.setAttribute(k, '');
    else el.setAttribute(k, String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : String(c));
  }
}

// replace puts children in place of container's, keeping the keyboard
// focus on the element with the same data-key, so a live update does not
// throw a keyboard user back to the top of the page.
export function replace(container, ...children) {
  const active = document.activeElement;
  const key = active && container.contains(active) ? active.dataset.key : undefined;
  container.replaceChildren();
  append(container, children);
  if (key !== undefined) {
    const again = container.querySelector(`[data-key="${CSS.escape(key)}"]`);
    if (again) again.focus();
  }
}

// A table whose cells carry their column's name (data-label), which the
// narrow layout shows in front of each value.
export function table(cls, caption, columns, rows) {
  return h('div', {class: 'table-wrap'},
    h('table', {class: cls},
      caption ? h('caption', {}, caption) : null,
      h('thead', {}, h('tr', {}, columns.map((c) => h('th', {scope: 'col'}, c)))),
      h('tbody', {}, rows.map((r) => {
        const tr = r.attrs ? h('tr', r.attrs) : h('tr');
        r.cells.forEach((cell, i) => tr.append(h('td', {'data-label': columns[i]}, h('div', {class: 'cell'}, cell))));
        return tr;
      }))));
}

export function badge(text, kind) {
  return h('span', {class: `badge ${kind || text}`}, text);
}

// duration formats milliseconds for people: 850 ms, 12.3 s, 4 min 5 s.
export function duration(ms) {
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60000) return `${(ms / 1000).toFixed(ms < 10000 ? 1 : 0)} s`;
  const m = Math.floor(ms / 60000);
  if (m < 60) return `${m} min ${Math.round((ms % 60000) / 1000)} s`;
  return `${Math.floor(m / 60)} h ${m % 60} min`;
}

export function clock(iso) {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return iso || '';
  return d.toLocaleTimeString([], {hour: '2-digit', minute: '2-digit', second: '2-digit', hour12: false});
}
