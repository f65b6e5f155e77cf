package dns

import (
	"errors"
	"testing"

	mdns "github.com/miekg/dns"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/lieur/lieur/binder"
	"github.com/lieur/lieur/fsm"
)

// refusingBinder refuses default reads as a stale node does, while its
// table still holds an instance: the answer must not come from it.
type refusingBinder struct{}

func (refusingBinder) ServicesOf(string) ([]fsm.Instance, uint64) {
	return []fsm.Instance{{ID: "e1", Type: "echo", Address: "127.0.0.1", Port: 1}}, 1
}
func (refusingBinder) TypeIndex(string) uint64 { return 1 }
func (refusingBinder) ReadAllowed() error      { return errors.Join(binder.ErrStale) }

func TestStaleNodeAnswersSERVFAILButStillRefusesOtherZones(t *testing.T) {
	s, err := New(refusingBinder{}, Config{}, nil)
	require.NoError(t, err)
	q := new(mdns.Msg)
	q.SetQuestion("echo.service.lieur.", mdns.TypeA)
	m, _ := s.answer(q, s.cursorPick)
	assert.Equal(t, mdns.RcodeServerFailure, m.Rcode)
	assert.Empty(t, m.Answer)

	q.SetQuestion("example.com.", mdns.TypeA)
	m, _ = s.answer(q, s.cursorPick)
	assert.Equal(t, mdns.RcodeRefused, m.Rcode)
}

func TestConfigNormalizesTheDomainAndChecksTheTTL(t *testing.T) {
	c, err := NormalizeConfig(Config{Domain: "Svc.Example"})
	require.NoError(t, err)
	assert.Equal(t, "svc.example.", c.Domain)
	for _, bad := range []Config{{Domain: "."}, {Domain: "a..b"}, {Domain: "a_b."}, {TTL: -1}, {TTL: 1500 * 1e6}, {TTL: MaxTTL + 1e9}} {
		_, err := NormalizeConfig(bad)
		assert.Error(t, err, "%+v", bad)
	}
}
