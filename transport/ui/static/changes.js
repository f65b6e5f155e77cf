// Changes: the recent history of the table as this binder applied it
// (registrations, removals with their reason, lease state changes),
// newest first. Follows GET /v1/events as a blocking query; each binder
// keeps a bounded ring of its recent changes in memory, so history begins
// at the ring's oldest entry (or at the binder's last start).

import {h, replace, table, badge, clock} from './dom.js';
import {follow} from './api.js';

const KEEP = 1000; // rows kept on the page
const FIRST = 200; // events asked for on the page's first load only

const REASONS = {
  replaced: 'replaced by a new registration of the same id',
  deregistered: 'deregistered',
  'reported-down': 'reported down, verified unreachable',
  expired: 'lease expired, did not answer the probe',
  'critical-too-long': 'critical for too long',
  restored: 'not in the snapshot this binder restored',
  'snapshot-restore': 'not in the snapshot this binder restored',
  'lease-stale': 'lease passed without a heartbeat, still answers: stale',
  'lease-renewed': 'a heartbeat renewed the stale lease',
  check: 'a check changed',
};

// What the page has seen, kept across views. gaps: the ranges of indexes
// whose events the binder dropped before the page saw them, newest first.
const seen = {events: [], last: null, oldest: 0, gaps: []};

export function mount(main) {
  const ctl = new AbortController();
  let {events, last, oldest, gaps} = seen; // events newest first; last: highest index seen
  const summary = h('p', {id: 'changes-summary', class: 'summary', 'aria-live': 'polite'}, 'Loading…');
  const body = h('section', {'aria-label': 'Changes'});
  main.replaceChildren(h('h1', {}, 'Changes'), summary, body);
  if (last !== null) render();

  // Only a page that has seen nothing asks for the newest FIRST events;
  // every later request (and a return to this view) asks for all the
  // events after the last one seen: a limit there would silently skip
  // the older ones whenever more than FIRST arrived between two answers.
  const everything = '/v1/events';
  follow('events', last === null ? `${everything}?limit=${FIRST}` : everything, (data) => {
    const got = (data && data.events) || [];
    if (data && typeof data.oldest === 'number') {
      // The binder holds every event from index oldest on: a page whose
      // last seen index N is below oldest-1 missed the events between,
      // dropped from the ring before it asked. A page that has seen no
      // event yet (N = 0, the ring was empty) cannot tell a ring that
      // starts late from one that dropped, and missing any would take
      // 1 024 events between two answers: it claims nothing.
      if (last && data.oldest - 1 > last) gaps = [{from: last + 1, to: data.oldest - 1}, ...gaps];
      oldest = data.oldest;
    }
    const fresh = last === null ? got : got.filter((e) => e.index > last);
    events = fresh.concat(events).slice(0, KEEP);
    for (const e of got) last = Math.max(last ?? 0, e.index);
    if (last === null) last = (data && data.index) || 0;
    Object.assign(seen, {events, last, oldest, gaps});
    render();
  }, ctl.signal, {
    then: everything,
    indexOf: (data, header) => (data && Number.isFinite(data.index) ? data.index : header),
  });

  function render() {
    replace(summary, events.length === 0 ? 'No change since this binder started (or the ring holds none).'
      : `${events.length} change${events.length === 1 ? '' : 's'} shown, newest first`,
    oldest ? ` · this binder still holds changes from index ${oldest}` : '');
    const range = (g) => (g.to > g.from ? `${g.from} to ${g.to}` : String(g.from));
    const dropped = gaps.length ? h('p', {id: 'changes-gap', class: 'result failed', role: 'status', dataset: {gaps: gaps.length}},
      'Some older changes were dropped from this binder\'s ring before this page saw them ',
      `(index ${gaps.map(range).join(', ')}): the list below is not the whole history; `,
      'the Services view shows the table as it is now.') : null;
    if (events.length === 0) {
      replace(body, dropped);
      return;
    }
    replace(body, dropped, table('events cards', null, ['Time', 'Index', 'Change', 'Instance', 'Type', 'Address', 'Detail'],
      events.map((e) => ({
        attrs: {dataset: {index: e.index, kind: e.kind, id: e.id}},
        cells: [
          h('time', {datetime: e.time, title: e.time}, clock(e.time)),
          String(e.index),
          kindBadge(e),
          h('code', {}, e.id),
          e.type || '',
          e.address ? h('code', {}, `${e.address}:${e.port}`) : '',
          detail(e),
        ],
      }))));
  }

  return {update() {}, unmount() { ctl.abort(); }};
}

function kindBadge(e) {
  if (e.kind === 'registered') return badge('registered', 'passing');
  if (e.kind === 'removed') return badge('removed', 'critical');
  if (e.kind === 'health') return badge('lease/health', 'warning');
  return badge(e.kind || '?', 'tag');
}

function detail(e) {
  const why = REASONS[e.reason] || e.reason || '';
  if (e.kind === 'health') {
    return h('span', {dataset: {reason: e.reason || ''}}, e.health ? `now ${e.health}` : '', e.health && why ? ': ' : '', why);
  }
  if (e.kind === 'registered' && !e.reason) return h('span', {dataset: {reason: ''}}, 'new');
  return h('span', {dataset: {reason: e.reason || ''}}, why);
}
