package binder

import (
	"strconv"
	"time"

	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/lieur/lieur/fsm"
)

var _ raft.FSM = (*timedFSM)(nil)

// timedFSM measures how long each apply takes; the FSM itself reads no
// clock.
type timedFSM struct {
	*fsm.FSM
	applySeconds prometheus.Histogram
}

func (t *timedFSM) Apply(l *raft.Log) interface{} {
	start := time.Now()
	r := t.FSM.Apply(l)
	t.applySeconds.Observe(time.Since(start).Seconds())
	return r
}

// metrics are a node's Prometheus instruments.
type metrics struct {
	applySeconds prometheus.Histogram
	verdicts     *prometheus.CounterVec
	waiters      prometheus.Gauge
	expiries     *prometheus.CounterVec
}

func newMetrics() *metrics {
	return &metrics{
		applySeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "lieur_fsm_apply_seconds", Help: "Time to apply one log entry to the service table.",
			Buckets: prometheus.ExponentialBuckets(1e-6, 4, 10),
		}),
		verdicts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lieur_verifications_total", Help: "Down-report verifications by verdict.",
		}, []string{"verdict"}),
		waiters: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "lieur_waiters", Help: "Requests waiting for a change (?wait= lookups and blocking queries).",
		}),
		expiries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lieur_lease_expiries_total", Help: "Lease expiries by outcome (removed, stale, renewed).",
		}, []string{"outcome"}),
	}
}

// Collectors returns the node's Prometheus collectors: its instruments and
// a collector reading raft and table state at scrape time.
func (n *Node) Collectors() []prometheus.Collector {
	return []prometheus.Collector{n.metrics.applySeconds, n.metrics.verdicts, n.metrics.waiters, n.metrics.expiries, n.dead.removed, stateCollector{n}}
}

var (
	descState       = prometheus.NewDesc("lieur_raft_state", "1 for this node's current raft state.", []string{"state"}, nil)
	descApplied     = prometheus.NewDesc("lieur_raft_applied_index", "Last log index applied.", nil, nil)
	descCommit      = prometheus.NewDesc("lieur_raft_commit_index", "Last log index known committed.", nil, nil)
	descLastIndex   = prometheus.NewDesc("lieur_raft_last_log_index", "Last log index stored.", nil, nil)
	descLastContact = prometheus.NewDesc("lieur_raft_last_contact_seconds", "Seconds since this node last heard from the leader (0 on the leader, -1 never).", nil, nil)
	descTerm        = prometheus.NewDesc("lieur_raft_term", "Current raft term.", nil, nil)
	descInstances   = prometheus.NewDesc("lieur_instances", "Registered instances per service type.", []string{"type"}, nil)
	descCaughtUp    = prometheus.NewDesc("lieur_caught_up", "1 once the node has caught up with the leader since it started.", nil, nil)
)

type stateCollector struct{ n *Node }

func (c stateCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descState, descApplied, descCommit, descLastIndex, descLastContact, descTerm, descInstances, descCaughtUp} {
		ch <- d
	}
}

func (c stateCollector) Collect(ch chan<- prometheus.Metric) {
	n := c.n
	// Not n.Status(): that hashes the whole table, which a scrape needs not.
	state := stateName(n.raft.State())
	for _, s := range []string{"leader", "follower", "candidate", "unknown"} {
		v := 0.0
		if state == s {
			v = 1
		}
		ch <- prometheus.MustNewConstMetric(descState, prometheus.GaugeValue, v, s)
	}
	ch <- prometheus.MustNewConstMetric(descApplied, prometheus.GaugeValue, float64(n.raft.AppliedIndex()))
	ch <- prometheus.MustNewConstMetric(descCommit, prometheus.GaugeValue, float64(n.raft.CommitIndex()))
	ch <- prometheus.MustNewConstMetric(descLastIndex, prometheus.GaugeValue, float64(n.raft.LastIndex()))
	lc := -1.0
	if d := n.LastContact(); d >= 0 {
		lc = d.Seconds()
	}
	ch <- prometheus.MustNewConstMetric(descLastContact, prometheus.GaugeValue, lc)
	term, _ := strconv.ParseUint(n.raft.Stats()["term"], 10, 64)
	ch <- prometheus.MustNewConstMetric(descTerm, prometheus.GaugeValue, float64(term))
	caught := 0.0
	if n.caughtUp.Load() {
		caught = 1
	}
	ch <- prometheus.MustNewConstMetric(descCaughtUp, prometheus.GaugeValue, caught)
	for typ, count := range n.fsm.CountByType() {
		ch <- prometheus.MustNewConstMetric(descInstances, prometheus.GaugeValue, float64(count), typ)
	}
}
