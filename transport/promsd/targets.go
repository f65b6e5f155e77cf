package promsd

import (
	"cmp"
	"net"
	"slices"
	"strconv"
	"strings"

	"github.com/lieur/lieur/fsm"
)

// Label names of a target group (see the package comment).
const (
	LabelType    = "__meta_lieur_type"
	LabelID      = "__meta_lieur_id"
	LabelAddress = "__meta_lieur_address"
	LabelPort    = "__meta_lieur_port"
	LabelHealth  = "__meta_lieur_health"
	LabelTags    = "__meta_lieur_tags"
	LabelBinder  = "__meta_lieur_binder"
	// LabelMetaPrefix + the sanitised key: one label per meta pair.
	LabelMetaPrefix = "__meta_lieur_meta_"
)

// TagSeparator separates, and surrounds, the tags in LabelTags.
const TagSeparator = ","

// fixedLabels is the number of labels every instance has.
const fixedLabels = 7

// TargetGroup is one entry of Prometheus' HTTP discovery answer.
type TargetGroup struct {
	Targets []string          `json:"targets"`
	Labels  map[string]string `json:"labels"`
}

// targetGroups returns one group per instance, ordered by type then id,
// never nil (an empty table is "[]", not "null"). binderID names the node
// that answers.
func targetGroups(list []fsm.Instance, binderID string) []TargetGroup {
	list = slices.Clone(list)
	slices.SortFunc(list, func(a, b fsm.Instance) int {
		return cmp.Or(cmp.Compare(a.Type, b.Type), cmp.Compare(a.ID, b.ID))
	})
	out := make([]TargetGroup, 0, len(list))
	for i := range list {
		out = append(out, targetGroup(&list[i], binderID))
	}
	return out
}

func targetGroup(inst *fsm.Instance, binderID string) TargetGroup {
	port := strconv.Itoa(inst.Port)
	labels := make(map[string]string, fixedLabels+len(inst.Meta))
	labels[LabelType] = inst.Type
	labels[LabelID] = inst.ID
	labels[LabelAddress] = inst.Address
	labels[LabelPort] = port
	labels[LabelHealth] = inst.Status()
	// Surrounded by the separator, as Consul's discovery does, so that a
	// regex need not care where a tag stands.
	labels[LabelTags] = TagSeparator + strings.Join(inst.Tags, TagSeparator) + TagSeparator
	labels[LabelBinder] = binderID
	keys := make([]string, 0, len(inst.Meta))
	for k := range inst.Meta {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		name := LabelMetaPrefix + SanitizeLabelName(k)
		if _, taken := labels[name]; !taken {
			labels[name] = inst.Meta[k]
		}
	}
	return TargetGroup{Targets: []string{net.JoinHostPort(inst.Address, port)}, Labels: labels}
}

// SanitizeLabelName replaces every character outside [a-zA-Z0-9_] with
// '_', as Prometheus' own discoveries do (strutil.SanitizeLabelName): one
// '_' per character, not per byte. The result is a valid label name once
// prefixed (it may start with a digit, and is empty for "").
func SanitizeLabelName(s string) string {
	valid := true
	for i := 0; i < len(s); i++ {
		if !labelChar(s[i]) {
			valid = false
			break
		}
	}
	if valid {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	for _, r := range s {
		if r < 0x80 && labelChar(byte(r)) {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	return b.String()
}

func labelChar(c byte) bool {
	return c == '_' || ('a' <= c && c <= 'z') || ('A' <= c && c <= 'Z') || ('0' <= c && c <= '9')
}
