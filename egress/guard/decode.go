package guard

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// Change is one object a ruleset commit added or deleted, as the kernel's
// NFNLGRP_NFTABLES notification names it.
type Change struct {
	Add    bool   // NEW* message; otherwise DEL*
	Object string // table, chain, rule, set, element, object, flowtable
	Family string // inet, ip, ip6, arp, bridge, netdev
	Table  string
	Name   string // chain, set, object or flowtable name; a rule's chain; an element's set
	// For base chains: hook number (NF_INET_*) and priority.
	Base     bool
	Hook     uint32
	Priority int32
	// Rewrites, for a rule, names its first statement that changes or
	// re-sends packets ("payload set", "dup", "queue", "target TEE"...):
	// one that runs after our rules decided can send an allowed flow
	// somewhere else. "" for a rule with none.
	Rewrites string
}

// Commit is one ruleset generation: its changes and who committed it. PID
// is the committing thread's id, Comm its name (the kernel's TASK_COMM_LEN
// prefix).
type Commit struct {
	PID  int
	Comm string
	// PortID is the netlink port the batch came from (the notification's
	// nlmsg_pid): unique in the network namespace while its socket lives,
	// so it tells our own commits apart where the kernel's pid does not
	// (the agent in a pid namespace: PID is the pid of the initial one).
	PortID  uint32
	Changes []Change
}

// String says what a change did, nft-style: "delete table inet harden_runner".
func (c Change) String() string {
	verb := "delete"
	if c.Add {
		verb = "add"
	}
	s := fmt.Sprintf("%s %s %s %s", verb, c.Object, c.Family, c.Table)
	if c.Object != "table" && c.Name != "" {
		s += " " + c.Name
	}
	if c.Base {
		s += fmt.Sprintf(" (hook %s priority %d)", hookName(c.Hook), c.Priority)
	}
	return s
}

var families = map[uint8]string{
	unix.NFPROTO_INET: "inet", unix.NFPROTO_IPV4: "ip", unix.NFPROTO_IPV6: "ip6",
	unix.NFPROTO_ARP: "arp", unix.NFPROTO_BRIDGE: "bridge", unix.NFPROTO_NETDEV: "netdev",
}

func hookName(h uint32) string {
	switch h {
	case unix.NF_INET_PRE_ROUTING:
		return "prerouting"
	case unix.NF_INET_LOCAL_IN:
		return "input"
	case unix.NF_INET_FORWARD:
		return "forward"
	case unix.NF_INET_LOCAL_OUT:
		return "output"
	case unix.NF_INET_POST_ROUTING:
		return "postrouting"
	}
	return fmt.Sprint(h)
}

// Attribute numbers that every object message shares: the table's name is
// attribute 1 (NFTA_TABLE_NAME, NFTA_CHAIN_TABLE, NFTA_RULE_TABLE,
// NFTA_SET_TABLE, NFTA_SET_ELEM_LIST_TABLE, NFTA_OBJ_TABLE,
// NFTA_FLOWTABLE_TABLE).
const attrTable = 1

// nftaFlowtableName is NFTA_FLOWTABLE_NAME, which x/sys does not define.
const nftaFlowtableName = 2

// objects maps a message type to the object it concerns, whether it adds,
// and which attribute holds the object's own name.
var objects = map[uint16]struct {
	object string
	add    bool
	name   uint16
}{
	unix.NFT_MSG_NEWTABLE: {"table", true, 0}, unix.NFT_MSG_DELTABLE: {"table", false, 0},
	unix.NFT_MSG_NEWCHAIN: {"chain", true, unix.NFTA_CHAIN_NAME}, unix.NFT_MSG_DELCHAIN: {"chain", false, unix.NFTA_CHAIN_NAME},
	unix.NFT_MSG_NEWRULE: {"rule", true, unix.NFTA_RULE_CHAIN}, unix.NFT_MSG_DELRULE: {"rule", false, unix.NFTA_RULE_CHAIN},
	unix.NFT_MSG_NEWSET: {"set", true, unix.NFTA_SET_NAME}, unix.NFT_MSG_DELSET: {"set", false, unix.NFTA_SET_NAME},
	unix.NFT_MSG_NEWSETELEM: {"element", true, unix.NFTA_SET_ELEM_LIST_SET}, unix.NFT_MSG_DELSETELEM: {"element", false, unix.NFTA_SET_ELEM_LIST_SET},
	unix.NFT_MSG_NEWOBJ: {"object", true, unix.NFTA_OBJ_NAME}, unix.NFT_MSG_DELOBJ: {"object", false, unix.NFTA_OBJ_NAME},
	unix.NFT_MSG_NEWFLOWTABLE: {"flowtable", true, nftaFlowtableName}, unix.NFT_MSG_DELFLOWTABLE: {"flowtable", false, nftaFlowtableName},
}

// errNotNFT is returned for messages of other netfilter subsystems.
var errNotNFT = errors.New("not an nf_tables message")

// decode reads one notification. For NFT_MSG_NEWGEN it returns gen set
// (with the committer); for an object message, the change.
func decode(m netlink.Message) (ch Change, gen *Commit, err error) {
	typ := uint16(m.Header.Type)
	if typ>>8 != unix.NFNL_SUBSYS_NFTABLES {
		return ch, nil, errNotNFT
	}
	typ &= 0xff
	if len(m.Data) < 4 {
		return ch, nil, fmt.Errorf("guard: nf_tables message type %d: %d bytes, too short", typ, len(m.Data))
	}
	ad, err := netlink.NewAttributeDecoder(m.Data[4:])
	if err != nil {
		return ch, nil, fmt.Errorf("guard: nf_tables message type %d: %w", typ, err)
	}
	ad.ByteOrder = binary.BigEndian
	if typ == unix.NFT_MSG_NEWGEN {
		gen = &Commit{PortID: m.Header.PID}
		for ad.Next() {
			switch ad.Type() {
			case unix.NFTA_GEN_PROC_PID:
				gen.PID = int(ad.Uint32())
			case unix.NFTA_GEN_PROC_NAME:
				gen.Comm = ad.String()
			}
		}
		return ch, gen, ad.Err()
	}
	o, ok := objects[typ]
	if !ok {
		return ch, nil, errNotNFT
	}
	ch = Change{Add: o.add, Object: o.object, Family: FamilyName(m.Data[0])}
	for ad.Next() {
		switch t := ad.Type(); {
		case t == attrTable:
			ch.Table = ad.String()
		case o.name != 0 && t == o.name:
			ch.Name = ad.String()
		case o.object == "rule" && t == unix.NFTA_RULE_EXPRESSIONS:
			ad.Nested(func(nd *netlink.AttributeDecoder) error {
				for nd.Next() {
					if nd.Type() == unix.NFTA_LIST_ELEM && ch.Rewrites == "" {
						nd.Nested(func(ed *netlink.AttributeDecoder) error {
							ch.Rewrites = rewrites(ed)
							return nil
						})
					}
				}
				return nil
			})
		case o.object == "chain" && t == unix.NFTA_CHAIN_HOOK:
			ch.Base = true
			ad.Nested(func(nd *netlink.AttributeDecoder) error {
				for nd.Next() {
					switch nd.Type() {
					case unix.NFTA_HOOK_HOOKNUM:
						ch.Hook = nd.Uint32()
					case unix.NFTA_HOOK_PRIORITY:
						ch.Priority = int32(nd.Uint32())
					}
				}
				return nil
			})
		}
	}
	return ch, nil, ad.Err()
}

// rewriters are the expressions that change a packet or send it (or a
// copy) elsewhere by themselves: dup and fwd send copies or the packet
// out another way, queue hands it to a process that may give back another
// one, tproxy diverts it to a local socket.
var rewriters = map[string]bool{"dup": true, "fwd": true, "queue": true, "tproxy": true}

// xtRewriters are iptables-nft's targets (the compat "target"
// expression) that do as rewriters do, or rewrite addresses in a filter
// or mangle chain.
var xtRewriters = map[string]bool{"TEE": true, "NFQUEUE": true, "QUEUE": true, "TPROXY": true}

// rewrites reads one expression (NFTA_EXPR_NAME, NFTA_EXPR_DATA) and says
// which rewriting statement it is, or "".
func rewrites(ed *netlink.AttributeDecoder) string {
	var name string
	for ed.Next() {
		switch ed.Type() {
		case unix.NFTA_EXPR_NAME:
			name = ed.String()
		case unix.NFTA_EXPR_DATA:
			var why string
			ed.Nested(func(dd *netlink.AttributeDecoder) error {
				for dd.Next() {
					switch {
					// A payload or exthdr expression with a source
					// register writes the packet.
					case name == "payload" && dd.Type() == unix.NFTA_PAYLOAD_SREG,
						name == "exthdr" && dd.Type() == unix.NFTA_EXTHDR_SREG:
						why = name + " set"
					case name == "target" && dd.Type() == unix.NFTA_TARGET_NAME && xtRewriters[dd.String()]:
						why = "target " + dd.String()
					}
				}
				return nil
			})
			if why != "" {
				return why
			}
		}
	}
	if rewriters[name] {
		return name
	}
	return ""
}
