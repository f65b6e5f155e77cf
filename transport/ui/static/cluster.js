// Cluster: every binder's own view (state, leader, term, applied index,
// last contact, caught-up, table hash), whether they all hold the same
// table, and how far each follower is behind the leader. Polled every
// 1.5 s from GET /v1/cluster/status: indexes, contact times and terms
// change continuously, so there is no index to block on.

import {h, replace, table, badge, duration} from './dom.js';
import {poll, ApiError} from './api.js';

export const PERIOD_MS = 1500;

export function mount(main) {
  const ctl = new AbortController();
  // Not a live region: it is redrawn on every poll.
  const summary = h('div', {id: 'cluster-summary', class: 'summary'}, 'Loading…');
  const body = h('section', {'aria-label': 'Binders'});
  const when = h('p', {class: 'help'});
  main.replaceChildren(h('h1', {}, 'Cluster'), summary, body, when);
  // A binder of an older build has no /v1/cluster/status: /v1/cluster
  // still gives each member's state.
  const full = new AbortController();
  ctl.signal.addEventListener('abort', () => full.abort());
  poll('cluster', '/v1/cluster/status', PERIOD_MS, render, full.signal, (e) => {
    if (!(e instanceof ApiError) || e.status !== 404) return false;
    full.abort();
    poll('cluster', '/v1/cluster', PERIOD_MS, renderBasic, ctl.signal);
    return true;
  });

  function render(data) {
    const members = (data.members || []).slice().sort((a, b) => a.id.localeCompare(b.id));
    const leader = members.find((m) => m.id === data.leader && m.reachable && m.status);
    const up = members.filter((m) => m.reachable && m.status);
    const down = members.filter((m) => !m.reachable || !m.status);
    const hashes = new Map();
    for (const m of up) hashes.set(m.status.table_hash, [...(hashes.get(m.status.table_hash) || []), m.id]);
    const lead = leader ? leader.status : null;
    const parts = [];
    parts.push(h('p', {}, data.leader ? ['Leader: ', h('strong', {id: 'leader', dataset: {leader: data.leader}}, data.leader),
      lead ? ` (term ${lead.term}, applied index ${lead.applied_index})` : ''] : h('strong', {class: 'bad'}, 'No leader known to this binder.')));
    if (hashes.size === 1) {
      const [hash] = hashes.keys();
      parts.push(h('p', {id: 'agreement', dataset: {agree: 'true'}}, badge('agree', 'passing'),
        ` All ${up.length} answering binder${up.length === 1 ? '' : 's'} hold the same table (hash ${short(hash)}).`));
    } else if (hashes.size > 1) {
      parts.push(h('p', {id: 'agreement', dataset: {agree: 'false'}}, badge('differ', 'warning'),
        ` Table hashes differ: ${[...hashes.entries()].map(([hh, ids]) => `${ids.join(', ')}: ${short(hh)}`).join(' · ')}`,
        '. A follower still applying the latest entries differs until it catches up; see "Behind".'));
    }
    if (down.length) {
      parts.push(h('p', {class: 'bad'}, badge('down', 'critical'), ` Not answering: ${down.map((m) => m.id).join(', ')}.`));
    }
    parts.push(h('p', {class: 'help'}, `Seen from ${data.binder || 'this binder'}; each row is that binder's own /v1/status.`));
    replace(summary, parts);

    const rows = members.map((m) => {
      const st = m.status;
      if (!m.reachable || !st) {
        return {
          attrs: {dataset: {binder: m.id, state: 'down'}, class: 'down'},
          cells: [h('strong', {}, m.id), h('code', {}, m.http_addr || '—'), badge('down', 'critical'),
            '—', '—', '—', '—', '—', '—', '—', h('span', {class: 'output'}, m.error || 'not answering')],
        };
      }
      const behind = lead && m.id !== data.leader ? Math.max(0, lead.applied_index - st.applied_index) : null;
      const agrees = hashes.size === 1 || (lead && st.table_hash === lead.table_hash);
      return {
        attrs: {dataset: {binder: m.id, state: st.state}},
        cells: [
          h('strong', {}, m.id, m.id === data.binder ? h('span', {class: 'note'}, ' (this page)') : null),
          h('code', {}, m.http_addr || '—'),
          badge(st.state, st.state === 'leader' ? 'leader' : st.state === 'follower' ? 'passing' : 'warning'),
          String(st.term),
          String(st.applied_index),
          behind === null ? '—' : behind === 0 ? badge('0', 'passing') : badge(`${behind} entries`, 'warning'),
          st.last_contact_ms < 0 ? 'never' : st.state === 'leader' ? '—' : duration(st.last_contact_ms),
          st.caught_up ? 'yes' : badge('catching up', 'warning'),
          h('code', {class: agrees ? 'hash same' : 'hash differs', title: st.table_hash}, short(st.table_hash)),
          String(st.services),
          notes(st),
        ],
      };
    });
    replace(body, table('binders cards', null,
      ['Binder', 'HTTP address', 'State', 'Term', 'Applied', 'Behind', 'Last contact', 'Caught up', 'Table hash', 'Instances', 'Notes'], rows));
    replace(when, `Polled every ${PERIOD_MS / 1000} s (these figures change continuously); last answer at ${new Date().toLocaleTimeString([], {hour12: false})}.`);
  }

  function notes(st) {
    const out = [];
    if (st.verification_hold) out.push(badge('holding removals', 'warning'));
    if (st.lease_guard && Object.keys(st.lease_guard).length) {
      out.push(badge(`lease guard: ${Object.entries(st.lease_guard).map(([t, n]) => `${t} ${n}`).join(', ')}`, 'warning'));
    }
    if (st.log_format) out.push(h('span', {class: 'note'}, ` log format ${st.log_format}`));
    return out;
  }

  // renderBasic: an older binder's /v1/cluster, each member's state only.
  function renderBasic(data) {
    const members = (data.members || []).slice().sort((a, b) => a.id.localeCompare(b.id));
    replace(summary, h('p', {}, data.leader ? ['Leader: ', h('strong', {id: 'leader', dataset: {leader: data.leader}}, data.leader)] : 'No leader known.'),
      h('p', {class: 'help'}, 'This binder does not serve /v1/cluster/status: only states are shown.'));
    replace(body, table('binders cards', null, ['Binder', 'HTTP address', 'State'], members.map((m) => ({
      attrs: {dataset: {binder: m.id, state: m.state === 'unknown' ? 'down' : m.state}},
      cells: [h('strong', {}, m.id), h('code', {}, m.http_addr || '—'),
        m.state === 'unknown' ? badge('down', 'critical') : badge(m.state, m.state === 'leader' ? 'leader' : 'passing')],
    }))));
  }

  return {update() {}, unmount() { ctl.abort(); }};
}

function short(hash) {
  return hash ? hash.slice(0, 12) : '—';
}
