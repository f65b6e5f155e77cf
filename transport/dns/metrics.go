package dns

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	malformed  *prometheus.CounterVec
	responses  *prometheus.CounterVec
	readErrors prometheus.Counter
}

func newMetrics() metrics {
	m := metrics{
		malformed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lieur_dns_malformed_total",
			Help: "DNS packets dropped or refused as malformed: unparsable, or rejected (a response, several questions, a non-query opcode).",
		}, []string{"reason"}),
		responses: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lieur_dns_responses_total",
			Help: "DNS answers sent, by response code.",
		}, []string{"rcode"}),
		readErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "lieur_dns_read_errors_total",
			Help: "UDP batch reads that failed with an error the socket recovers from (no memory or buffers for now); the socket is read again after a back-off.",
		}),
	}
	// Shown at 0 from the start, so that a rate() has a first sample.
	m.malformed.WithLabelValues("unparsable")
	m.malformed.WithLabelValues("rejected")
	return m
}
