/// A copy of the parameters, BatchNorm state and layer counters, for restore_best_weights. Allocated once.
final class WeightsSnapshot {
    let parameters: UnsafeMutableBufferPointer<Float>
    let state: UnsafeMutableBufferPointer<Float>
    var batchesTracked: [Int64]

    init(network: Network) {
        parameters = .allocate(capacity: network.parameters.count)
        parameters.initialize(repeating: 0)
        state = .allocate(capacity: network.state.count)
        state.initialize(repeating: 0)
        batchesTracked = Array(repeating: 0, count: network.counters.count)
    }

    deinit {
        parameters.deallocate()
        state.deallocate()
    }

    func take(from network: Network) {
        _ = parameters.update(fromContentsOf: network.parameters)
        _ = state.update(fromContentsOf: network.state)
        for index in batchesTracked.indices { batchesTracked[index] = network.counters[index] }
    }

    func restore(into network: Network) {
        _ = network.parameters.update(fromContentsOf: parameters)
        _ = network.state.update(fromContentsOf: state)
        for index in batchesTracked.indices { network.counters[index] = batchesTracked[index] }
    }

    func tensors() -> [StoredTensor] {
        [StoredTensor(name: "best.parameters", shape: [parameters.count], floats: UnsafeBufferPointer(parameters)),
         StoredTensor(name: "best.state", shape: [state.count], floats: UnsafeBufferPointer(state)),
         StoredTensor(name: "best.batches_tracked", shape: [batchesTracked.count], int64s: batchesTracked)]
    }

    func load(_ tensors: [String: StoredTensor], file: String) throws {
        guard let p = tensors["best.parameters"], let s = tensors["best.state"] else {
            throw DDPError(.weights, "\(file): missing best.parameters/best.state for restore_best_weights")
        }
        try p.copyFloats(into: parameters, file: file)
        try s.copyFloats(into: state, file: file)
        if let counts = tensors["best.batches_tracked"]?.int64s(), counts.count == batchesTracked.count { batchesTracked = counts }
    }

    func broadcast(_ communicator: Communicator) throws {
        try communicator.broadcast(parameters)
        try communicator.broadcast(state)
        try communicator.broadcast(&batchesTracked)
    }
}
