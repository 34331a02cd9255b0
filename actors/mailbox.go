package actors

import (
	"runtime"
	"sync"

	"github.com/asynkron/protoactor-go/actor"
)

// mailbox is the mailbox of user grains: protoactor's unbounded
// mailbox semantics (system messages first, suspension, a yield every
// Throughput messages, a panic escalated to the supervisor) in one small
// struct. The default mailbox allocates two queues per actor (a growable
// ring for user messages and a lock-free list for system messages), seven
// heap objects that live as long as the actor; at tens of thousands of
// active grains they were a sixth of all the objects the garbage collector
// marks. Here an actor's mailbox is one object while at most
// len(mailbox.ring) user messages wait, which is nearly always the case for
// a grain; a burst spills into a slice that is dropped once drained.
//
// Producers and the consumer share one lock, taken for every message on
// both sides, so an actor that many goroutines flood is better served by
// protoactor's mailbox, or, as writers take checkins, by an inbox emptied
// in one take (writer.go): BenchmarkMailbox measures all three.
type mailbox struct {
	mu         sync.Mutex
	ring       [4]any // user messages, FIFO, while overflow is empty
	head, n    uint8  // ring[head] is the oldest of n
	overflow   []any  // later user messages, FIFO, once the ring was full
	system     []any
	scheduled  bool // a run is scheduled or running
	suspended  bool
	stopped    bool // the actor stopped: user messages go to dead letters
	invoker    actor.MessageInvoker
	dispatcher actor.Dispatcher
}

// newMailbox is the actor.MailboxProducer of mailbox.
func newMailbox() actor.Mailbox { return &mailbox{} }

var _ actor.Mailbox = (*mailbox)(nil)

func (m *mailbox) PostUserMessage(msg any) {
	// A batch is delivered as its messages and then itself, as protoactor's
	// mailboxes do.
	if batch, ok := msg.(actor.MessageBatch); ok {
		for _, b := range batch.GetMessages() {
			m.PostUserMessage(b)
		}
	}
	if env, ok := msg.(*actor.MessageEnvelope); ok {
		if batch, ok := env.Message.(actor.MessageBatch); ok {
			for _, b := range batch.GetMessages() {
				m.PostUserMessage(b)
			}
		}
	}
	m.mu.Lock()
	if m.stopped { // a sender that resolved the PID before the stop
		m.mu.Unlock()
		m.deadLetter(msg)
		return
	}
	if len(m.overflow) > 0 || int(m.n) == len(m.ring) {
		m.overflow = append(m.overflow, msg)
	} else {
		m.ring[(int(m.head)+int(m.n))%len(m.ring)] = msg
		m.n++
	}
	m.scheduleLocked(!m.suspended)
}

func (m *mailbox) PostSystemMessage(msg any) {
	m.mu.Lock()
	m.system = append(m.system, msg)
	m.scheduleLocked(true)
}

// scheduleLocked schedules a run when want is true and none is pending, and
// unlocks m.
func (m *mailbox) scheduleLocked(want bool) {
	run := want && !m.scheduled
	if run {
		m.scheduled = true
	}
	m.mu.Unlock()
	if run {
		m.dispatcher.Schedule(m.process)
	}
}

func (m *mailbox) RegisterHandlers(invoker actor.MessageInvoker, dispatcher actor.Dispatcher) {
	m.invoker, m.dispatcher = invoker, dispatcher
}

func (m *mailbox) Start() {}

func (m *mailbox) UserMessageCount() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return int(m.n) + len(m.overflow)
}

// process runs messages until none is runnable. A poster that finds a run
// scheduled relies on it, so the run ends only under the lock, after seeing
// nothing left to do.
func (m *mailbox) process() {
	for {
		m.run()
		m.mu.Lock()
		if len(m.system) == 0 && (m.suspended || m.n == 0) {
			m.scheduled = false
			m.mu.Unlock()
			return
		}
		m.mu.Unlock()
	}
}

// run invokes messages, system ones first, until there are none or the
// mailbox is suspended. A panic is escalated to the actor's supervisor
// (which suspends the mailbox until it decided).
func (m *mailbox) run() {
	var msg any
	defer func() {
		if r := recover(); r != nil {
			m.invoker.EscalateFailure(r, msg)
		}
	}()
	limit := m.dispatcher.Throughput()
	for i := 0; ; i++ {
		if i > limit {
			i = 0
			runtime.Gosched()
		}
		m.mu.Lock()
		if len(m.system) > 0 {
			msg = m.system[0]
			m.system[0] = nil
			m.system = m.system[1:]
			if len(m.system) == 0 {
				m.system = nil
			}
			switch msg.(type) {
			case *actor.SuspendMailbox:
				m.suspended = true
				m.mu.Unlock()
			case *actor.ResumeMailbox:
				m.suspended = false
				m.mu.Unlock()
			default:
				m.mu.Unlock()
				m.invoker.InvokeSystemMessage(msg)
				m.afterSystemMessage()
			}
			continue
		}
		if m.suspended || m.n == 0 {
			m.mu.Unlock()
			return
		}
		msg = m.popUserLocked()
		m.mu.Unlock()
		m.invoker.InvokeUserMessage(msg)
	}
}

// afterSystemMessage notices that the actor stopped (a stop completes in a
// system message) and hands every user message still queued to dead
// letters. protoactor drops them silently, so their senders would wait out
// their timeouts; dead letters answer a request with a DeadLetterResponse,
// on which grain callers ask again at once. Messages posted later go the
// same way.
func (m *mailbox) afterSystemMessage() {
	sys, self := m.actor()
	if sys == nil {
		return
	}
	if _, alive := sys.ProcessRegistry.Get(self); alive {
		return
	}
	m.mu.Lock()
	m.stopped = true
	var left []any
	for m.n > 0 {
		left = append(left, m.popUserLocked())
	}
	m.mu.Unlock()
	for _, msg := range left {
		sys.DeadLetter.SendUserMessage(self, msg)
	}
}

// deadLetter hands msg, sent to the stopped actor, to dead letters.
func (m *mailbox) deadLetter(msg any) {
	if sys, self := m.actor(); sys != nil {
		sys.DeadLetter.SendUserMessage(self, msg)
	}
}

// actor returns the system and PID of the mailbox's actor (nil before the
// actor is registered with the mailbox).
func (m *mailbox) actor() (*actor.ActorSystem, *actor.PID) {
	c, ok := m.invoker.(interface {
		ActorSystem() *actor.ActorSystem
		Self() *actor.PID
	})
	if !ok || c.Self() == nil {
		return nil, nil
	}
	return c.ActorSystem(), c.Self()
}

// popUserLocked removes the oldest user message; m.n > 0.
func (m *mailbox) popUserLocked() any {
	msg := m.ring[m.head]
	m.ring[m.head] = nil
	m.head = uint8((int(m.head) + 1) % len(m.ring))
	m.n--
	// Refill the ring from the overflow, oldest first, so that the ring
	// always holds the oldest messages.
	for len(m.overflow) > 0 && int(m.n) < len(m.ring) {
		m.ring[(int(m.head)+int(m.n))%len(m.ring)] = m.overflow[0]
		m.n++
		m.overflow[0] = nil
		m.overflow = m.overflow[1:]
	}
	if len(m.overflow) == 0 {
		m.overflow = nil
	}
	return msg
}
