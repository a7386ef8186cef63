// The model behind `prefetch`'s markov policy: a Markov chain of order K over the ids of the
// reads a guest makes, learned online from every read (Lynx's approach to read-ahead for
// shuffled dataset access). Its state is bounded: at most `capacity` states, the oldest
// dropped first, and at most `successorLimit` successors a state.

/// One read as the chain sees it: where it starts (its id) and how long it was.
struct ReadID: Hashable, Sendable {
    var block: UInt64
    var length: UInt64
}

struct MarkovChain {
    /// The last K ids, oldest first (K = order); unused places hold `none`.
    struct State: Hashable {
        var ids: (UInt64, UInt64, UInt64, UInt64)
        static func == (a: State, b: State) -> Bool { a.ids == b.ids }
        func hash(into hasher: inout Hasher) {
            hasher.combine(ids.0)
            hasher.combine(ids.1)
            hasher.combine(ids.2)
            hasher.combine(ids.3)
        }
    }

    struct Successor {
        var read: ReadID
        var count: UInt32
    }

    /// Successors kept per state: a dataset read in one fixed shuffle has one; a few more
    /// absorb noise (another job's reads) without growing the table.
    static let successorLimit = 4
    static let none = UInt64.max

    let order: Int
    let capacity: Int
    private(set) var transitions: [State: [Successor]] = [:]
    /// States in the order they were added, for dropping the oldest (a ring).
    private var age: [State] = []
    private var ageNext = 0
    /// The last `order` reads, oldest first.
    private(set) var history: [ReadID] = []

    init(order: Int, capacity: Int) {
        self.order = order
        self.capacity = capacity
    }

    var stateCount: Int { transitions.count }

    private static func state(of reads: some Collection<ReadID>) -> State {
        var ids = [UInt64](repeating: none, count: 4)
        for (index, read) in reads.enumerated() { ids[index] = read.block }
        return State(ids: (ids[0], ids[1], ids[2], ids[3]))
    }

    /// Learns that `read` followed the history, then makes it part of the history.
    mutating func observe(_ read: ReadID) {
        if history.count == order {
            let state = Self.state(of: history)
            if var successors = transitions[state] {
                if let index = successors.firstIndex(where: { $0.read.block == read.block }) {
                    successors[index].count &+= 1
                    successors[index].read.length = read.length
                } else if successors.count < Self.successorLimit {
                    successors.append(Successor(read: read, count: 1))
                } else if let weakest = successors.indices.min(by: { successors[$0].count < successors[$1].count }) {
                    successors[weakest] = Successor(read: read, count: 1)
                }
                transitions[state] = successors
            } else {
                insert(state, [Successor(read: read, count: 1)])
            }
            history.removeFirst()
        }
        history.append(read)
    }

    /// The next `count` reads the chain expects, following its most frequent successor from the
    /// history on; fewer where it knows no successor.
    func predict(_ count: Int) -> [ReadID] {
        guard history.count == order else { return [] }
        var context = history
        var predicted: [ReadID] = []
        predicted.reserveCapacity(count)
        while predicted.count < count, let next = transitions[Self.state(of: context)]?.max(by: { $0.count < $1.count })?.read {
            predicted.append(next)
            context.removeFirst()
            context.append(next)
        }
        return predicted
    }

    private mutating func insert(_ state: State, _ successors: [Successor]) {
        if age.count < capacity {
            age.append(state)
        } else {
            transitions[age[ageNext]] = nil
            age[ageNext] = state
            ageNext = (ageNext + 1) % capacity
        }
        transitions[state] = successors
    }
}
