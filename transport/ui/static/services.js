// Services: every type with its instance count and health, filterable by
// name and tag; one type's instances with their lease, last heartbeat,
// flaps and checks, and the actions (deregister, report). Follows GET
// /v1/services as a blocking query: a change anywhere in the cluster
// reaches the page as soon as this binder applies it. Heartbeat ages come
// from GET /v1/leases (the leader's clock), asked while a type with
// leases is on screen.

import {h, replace, table, badge} from './dom.js';
import {call, follow, poll, explain, withToken, ApiError} from './api.js';
import {confirmAction} from './dialogs.js';
import {clear} from './status.js';

const HEALTHS = ['passing', 'warning', 'critical'];

// Heartbeat ages change continuously and only the leader knows them (a
// follower forwards the question), so they are asked for every 2 s, not
// followed; in between, the page counts on from the last answer, once a
// second, without a request.
const LEASE_PERIOD_MS = 2000;
const TICK_MS = 1000;

// The last answer, kept across views: coming back to Services shows it at
// once, also while the binder refuses reads.
const last = {instances: null, index: 0};

export function mount(main, params) {
  const ctl = new AbortController();
  let instances = last.instances; // sorted by type then id
  let index = last.index;
  let selected = params.type || '';
  let query = '';
  const result = {text: '', kind: ''}; // the last action's outcome
  // The selected type's lease ages: the last answer of GET /v1/leases and
  // when it came (performance.now()), or why there is none.
  const lease = {type: '', ctl: null, data: null, at: 0, error: ''};
  const ticker = setInterval(showAges, TICK_MS);

  const filter = h('input', {
    id: 'filter', type: 'search', placeholder: 'name or tag', autocomplete: 'off', spellcheck: 'false',
    'aria-describedby': 'filter-help',
    oninput: () => { query = filter.value.trim().toLowerCase(); render(); },
  });
  const summary = h('p', {class: 'summary', id: 'services-summary', 'aria-live': 'polite'});
  const types = h('section', {'aria-labelledby': 'types-title'});
  const detail = h('section', {id: 'instances', 'aria-labelledby': 'instances-title'});
  main.replaceChildren(
    h('h1', {}, 'Services'),
    h('div', {class: 'toolbar'},
      h('label', {for: 'filter'}, 'Filter'), filter,
      h('span', {id: 'filter-help', class: 'help'}, 'matches a type, an instance id or a tag')),
    summary, types, detail);

  follow('services', '/v1/services', (data, idx) => {
    instances = (data && data.services) || [];
    index = idx;
    last.instances = instances;
    last.index = idx;
    render();
  }, ctl.signal);

  function matches(inst) {
    if (!query) return true;
    if (inst.type.toLowerCase().includes(query) || inst.id.toLowerCase().includes(query)) return true;
    return (inst.tags || []).some((t) => t.toLowerCase().includes(query));
  }

  function render() {
    if (instances === null) {
      replace(summary, 'Loading…');
      return;
    }
    const byType = new Map();
    for (const inst of instances) {
      if (!byType.has(inst.type)) byType.set(inst.type, []);
      byType.get(inst.type).push(inst);
    }
    const shown = [...byType.entries()].filter(([, list]) => list.some(matches));
    replace(summary, `${instances.length} instance${instances.length === 1 ? '' : 's'} of ${byType.size} type${byType.size === 1 ? '' : 's'}`,
      query ? `, ${shown.length} type${shown.length === 1 ? '' : 's'} match "${query}"` : '',
      ` · table index ${index}`);
    renderTypes(shown);
    renderDetail(byType.get(selected) || []);
  }

  function renderTypes(shown) {
    if (shown.length === 0) {
      replace(types, h('h2', {id: 'types-title'}, 'Types'),
        h('p', {class: 'empty'}, instances.length === 0 ? 'No instance is registered.' : 'No type matches the filter.'));
      return;
    }
    const rows = shown.map(([typ, list]) => {
      const count = Object.fromEntries(HEALTHS.map((s) => [s, 0]));
      let stale = 0;
      for (const inst of list) {
        count[inst.status in count ? inst.status : 'critical']++;
        if (inst.health === 'stale-lease') stale++;
      }
      const tags = [...new Set(list.flatMap((i) => i.tags || []))].sort();
      return {
        attrs: {dataset: {type: typ}, class: typ === selected ? 'selected' : ''},
        cells: [
          h('a', {href: `#/services/${encodeURIComponent(typ)}`, dataset: {key: `type:${typ}`},
            'aria-current': typ === selected ? 'true' : null}, typ),
          h('span', {class: 'num', dataset: {count: list.length}}, String(list.length)),
          health(count.passing, 'passing'),
          [health(count.warning, 'warning'), stale ? h('span', {class: 'note'}, ` (${stale} stale lease)`) : null],
          health(count.critical, 'critical'),
          tags.map((t) => badge(t, 'tag')),
        ],
      };
    });
    replace(types, h('h2', {id: 'types-title'}, 'Types'),
      table('types cards', null, ['Type', 'Instances', 'Passing', 'Warning', 'Critical', 'Tags'], rows));
  }

  function health(n, kind) {
    return n ? badge(String(n), kind) : h('span', {class: 'zero'}, '0');
  }

  function renderDetail(list) {
    followLeases(list);
    if (!selected) {
      replace(detail, h('p', {class: 'help', id: 'instances-title'}, 'Choose a type to see its instances.'));
      return;
    }
    const insts = list.filter(matches);
    const outcome = result.text ? h('p', {id: 'action-result', class: `result ${result.kind}`, role: 'status', dataset: {outcome: result.kind}}, result.text) : null;
    if (list.length === 0) {
      replace(detail, h('h2', {id: 'instances-title'}, `Instances of ${selected}`), outcome,
        h('p', {class: 'empty'}, `No instance of ${selected} is registered (any more).`));
      return;
    }
    const rows = insts.map((i) => ({
      attrs: {dataset: {id: i.id, status: i.status}},
      cells: [
        h('code', {}, i.id),
        h('code', {}, `${i.address.includes(':') ? `[${i.address}]` : i.address}:${i.port}`),
        (i.tags || []).map((t) => badge(t, 'tag')),
        meta(i.meta),
        i.ttl ? i.ttl : h('span', {class: 'zero'}, 'none'),
        i.ttl ? (i.health === 'stale-lease' ? badge('stale', 'warning') : 'current') : h('span', {class: 'zero'}, '—'),
        h('span', {class: 'heartbeat', dataset: {heartbeatFor: i.id, leased: i.ttl ? 'true' : 'false'}}),
        String(i.flaps || 0),
        badge(i.status || 'passing', i.status || 'passing'),
        checks(i.checks),
        h('span', {class: 'actions'},
          h('button', {type: 'button', class: 'danger', dataset: {key: `dereg:${i.id}`, action: 'deregister'},
            'aria-label': `Deregister ${i.id}`, onclick: () => deregister(i)}, 'Deregister'),
          h('button', {type: 'button', dataset: {key: `report:${i.id}`, action: 'report'},
            'aria-label': `Report ${i.id} unreachable`, onclick: () => report(i)}, 'Report')),
      ],
    }));
    replace(detail, h('h2', {id: 'instances-title'}, `Instances of ${selected}`), outcome,
      table('instances cards', null,
        ['Id', 'Address', 'Tags', 'Meta', 'Lease TTL', 'Lease', 'Last heartbeat', 'Flaps', 'Status', 'Checks', 'Actions'], rows),
      insts.length < list.length ? h('p', {class: 'help'}, `${list.length - insts.length} more hidden by the filter.`) : null,
      list.some((i) => i.ttl) ? h('p', {class: 'help', id: 'heartbeat-help'},
        'Heartbeat ages are measured by the leader, the only binder heartbeats reach; ',
        'a new leader knows none from before it took over.') : null);
    showAges();
  }

  // followLeases asks for the selected type's lease ages while it has a
  // leased instance on screen, and stops otherwise.
  function followLeases(list) {
    const want = selected && list.some((i) => i.ttl) ? selected : '';
    if (want === lease.type) return;
    if (lease.ctl) {
      lease.ctl.abort();
      clear('leases'); // a 401 of the stopped poll is no longer news
    }
    Object.assign(lease, {type: want, ctl: null, data: null, at: 0, error: ''});
    if (!want) return;
    const mine = new AbortController();
    lease.ctl = mine;
    const signal = AbortSignal.any([ctl.signal, mine.signal]);
    poll('leases', `/v1/leases?type=${encodeURIComponent(want)}`, LEASE_PERIOD_MS, (data) => {
      if (signal.aborted) return; // an answer for a type no longer shown
      Object.assign(lease, {data, at: performance.now(), error: ''});
      showAges();
    }, signal, (e) => {
      if (signal.aborted) return true;
      // No age rather than an old one counted on; the reason goes in the
      // cells' title, not the banner: the table itself is still current.
      Object.assign(lease, {data: null, error: explain(e)});
      showAges();
      return true;
    });
  }

  // showAges writes each instance's last heartbeat age, counted on from
  // the leader's answer; it only touches those cells' text.
  function showAges() {
    for (const el of detail.querySelectorAll('[data-heartbeat-for]')) {
      const {text, title, since, ms} = ageOf(el.dataset.heartbeatFor, el.dataset.leased === 'true');
      if (el.textContent !== text) el.textContent = text;
      el.title = title;
      el.classList.toggle('zero', ms === null);
      el.dataset.since = since;
      if (ms === null) delete el.dataset.ageMs;
      else el.dataset.ageMs = String(ms);
    }
  }

  function ageOf(id, leased) {
    if (!leased) return {text: '—', title: 'no lease: nothing heartbeats', since: 'none', ms: null};
    const l = lease.data && lease.data.leases ? lease.data.leases[id] : null;
    if (!l) {
      const why = lease.error ? `unknown: ${lease.error}`
        : lease.data ? `the leader (${lease.data.leader}) holds no lease for it yet` : 'asking the leader…';
      return {text: '—', title: why, since: 'unknown', ms: null};
    }
    const ms = Math.max(0, Math.round(l.age_ms + performance.now() - lease.at));
    const by = `measured by the leader, ${lease.data.leader}`;
    if (l.since === 'heartbeat') return {text: `${ago(ms)} ago`, title: by, since: l.since, ms};
    if (l.since === 'registration') {
      return {text: `none yet (registered ${ago(ms)} ago)`, title: `${by}: no heartbeat since the registration`, since: l.since, ms};
    }
    return {text: `none since ${lease.data.leader} became leader, ${ago(ms)} ago`,
      title: `${by}: a new leader knows no heartbeat from before it took over`, since: l.since, ms};
  }

  function meta(m) {
    const keys = Object.keys(m || {}).sort();
    if (keys.length === 0) return h('span', {class: 'zero'}, '—');
    return h('dl', {class: 'meta'}, keys.map((k) => [h('dt', {}, k), h('dd', {}, m[k])]));
  }

  function checks(list) {
    if (!list || list.length === 0) return h('span', {class: 'zero'}, '—');
    return h('ul', {class: 'checks'}, list.map((c) => h('li', {},
      badge(c.status, c.status), ' ', h('span', {}, c.name || c.id), h('span', {class: 'note'}, ` ${c.kind}`),
      c.output ? h('div', {class: 'output'}, c.output) : null)));
  }

  function show(text, kind) {
    result.text = text;
    result.kind = kind;
    render();
  }

  async function deregister(inst) {
    const ok = await confirmAction('Deregister',
      `Deregister ${inst.id} (${inst.address}:${inst.port})? It is removed from every binder; a server that still heartbeats may register again.`,
      'Deregister');
    if (!ok) return;
    show(`Deregistering ${inst.id}…`, 'pending');
    try {
      const requestID = `ui-${crypto.randomUUID()}`;
      const {data} = await withToken(`Deregistering ${inst.id}`, () => call('DELETE', `/v1/services/${encodeURIComponent(inst.id)}`,
        {headers: {'X-Lieur-Request-Id': requestID}}));
      show(`Deregistered ${inst.id} (index ${data.index}).`, 'removed');
    } catch (e) {
      if (e instanceof ApiError && e.status === 404) show(`${inst.id} was already gone: ${e.message}`, 'removed');
      else show(`Deregistering ${inst.id} failed: ${e.describe ? e.describe() : e}`, 'failed');
    }
  }

  async function report(inst) {
    const ok = await confirmAction('Report unreachable',
      `Report ${inst.id} (${inst.address}:${inst.port}) unreachable? This binder probes it and removes it, from every binder, only if it does not answer.`,
      'Report');
    if (!ok) return;
    show(`Reporting ${inst.id}: the binder is probing it…`, 'pending');
    try {
      const {data} = await withToken(`Reporting ${inst.id}`, () => call('POST', '/v1/reports', {body: {id: inst.id}}));
      const why = {
        removed: 'it did not answer: removed from every binder',
        alive: 'it answered the probe: kept',
        unknown: 'it did not answer, but the removal was not committed (no leader, or this binder holds removals)',
      }[data.verdict] || '';
      show(`Verdict for ${inst.id}: ${data.verdict}${why ? ` (${why})` : ''}.`, data.verdict);
    } catch (e) {
      show(`Reporting ${inst.id} failed: ${e.describe ? e.describe() : e}`, 'failed');
    }
  }

  render();
  return {
    update(p) {
      const next = p.type || '';
      if (next !== selected) {
        selected = next;
        result.text = '';
        render();
      }
    },
    unmount() { ctl.abort(); clearInterval(ticker); },
  };
}

// ago: whole seconds, then minutes, for an age that is counted on every
// second.
function ago(ms) {
  const s = Math.floor(ms / 1000);
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${s % 60} s`;
  return `${Math.floor(m / 60)} h ${m % 60} min`;
}
