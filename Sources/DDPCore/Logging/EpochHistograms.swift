import Foundation

/// One tensor's values as TensorBoard's `HistogramProto` holds them
/// (`tensorboard/compat/proto/histogram.proto`):
///
///     HistogramProto { double min = 1; double max = 2; double num = 3; double sum = 4;
///                      double sum_squares = 5;
///                      repeated double bucket_limit = 6 [packed]; repeated double bucket = 7 [packed]; }
///
/// Bucketed as `tf.summary.histogram` buckets (tensorboard/plugins/histogram/summary_v2.py,
/// `buckets=30`): equal widths w = (max − min)/30, value x in bucket ⌊(x − min)/w⌋, the last
/// bucket closed on the right so max falls in it; bucket_limit[i] is bucket i's right edge
/// (min + (i + 1)·w, the last exactly max), which is how TensorBoard reads a HistogramProto
/// back (`data_compat`: bucket i spans bucket_limit[i − 1] … bucket_limit[i], the first from
/// min). A constant tensor has one bucket. Everything is summed in Double over the Float values.
public struct TensorHistogram: Equatable, Sendable {
    public var minimum: Double
    public var maximum: Double
    public var count: Double
    public var sum: Double
    public var sumOfSquares: Double
    /// Bucket i's right edge.
    public var bucketLimits: [Double]
    /// How many values fell in bucket i.
    public var bucketCounts: [Double]

    /// tf.summary.histogram's default number of buckets.
    public static let defaultBucketCount = 30
}

extension TensorHistogram {
    /// Two passes over `values` (the figures, then the buckets); the only allocations are the
    /// two bucket arrays.
    public init(_ values: UnsafeBufferPointer<Float>, bucketCount: Int = defaultBucketCount) {
        precondition(bucketCount > 0, "TensorHistogram: bucketCount must be positive")
        var minimum = Double.infinity, maximum = -Double.infinity, sum = 0.0, sumOfSquares = 0.0
        for value in values {
            let x = Double(value)
            minimum = min(minimum, x)
            maximum = max(maximum, x)
            sum += x
            sumOfSquares += x * x
        }
        count = Double(values.count)
        self.sum = sum
        self.sumOfSquares = sumOfSquares
        guard !values.isEmpty else {
            (self.minimum, self.maximum, bucketLimits, bucketCounts) = (0, 0, [], [])
            return
        }
        self.minimum = minimum
        self.maximum = maximum
        let range = maximum - minimum
        guard range > 0 else {
            (bucketLimits, bucketCounts) = ([maximum], [count])
            return
        }
        let width = range / Double(bucketCount), last = bucketCount - 1
        var counts = [Double](repeating: 0, count: bucketCount)
        counts.withUnsafeMutableBufferPointer { counts in
            for value in values {
                let position = ((Double(value) - minimum) / width).rounded(.down)
                // max lands at position bucketCount: into the last bucket, as tf clamps it. A NaN
                // (or an infinite range) lands there too instead of trapping in Int(_:).
                counts[position < Double(last) ? Int(position) : last] += 1
            }
        }
        bucketCounts = counts
        bucketLimits = (0..<bucketCount).map { $0 == last ? maximum : minimum + Double($0 + 1) * width }
    }

    public init(_ values: [Float], bucketCount: Int = defaultBucketCount) {
        self = values.withUnsafeBufferPointer { TensorHistogram($0, bucketCount: bucketCount) }
    }
}

extension TensorBoardEvent {
    /// One Summary of histograms at `step`, in the given order: one
    /// `Summary.Value { tag = 1; HistogramProto histo = 5; }` each (summary.proto).
    public static func histograms(_ values: [(tag: String, histogram: TensorHistogram)], step: Int, wallTime: Double) -> [UInt8] {
        var summary = ProtobufWriter()
        for (tag, histogram) in values {
            summary.message(1) { entry in
                entry.string(1, tag)
                entry.message(5) { proto in
                    proto.double(1, histogram.minimum)
                    proto.double(2, histogram.maximum)
                    proto.double(3, histogram.count)
                    proto.double(4, histogram.sum)
                    proto.double(5, histogram.sumOfSquares)
                    proto.packedDoubles(6, histogram.bucketLimits)
                    proto.packedDoubles(7, histogram.bucketCounts)
                }
            }
        }
        var event = ProtobufWriter()
        event.double(1, wallTime)
        if step != 0 { event.int64(2, Int64(step)) }
        event.bytes(5, summary.bytes)
        return event.bytes
    }
}

extension TensorBoardWriter {
    /// `logging.histograms`: for every trainable tensor, `weights/<name>` (its values now, at the
    /// epoch's end) and `gradients/<name>` (`gradient`: the whole trainable gradient of the
    /// epoch's last step, as `GradientSync.gatherGradient` returns it), named as the weights file
    /// names them, at step = `epoch` as the epoch's scalars: Keras's TensorBoard callback with
    /// `histogram_freq=1`. Histograms do not depend on element order, so the stored layout
    /// needs no permutation to torch's.
    public func appendHistograms(of network: Network, gradient: [Float], epoch: Int,
                                 wallTime: Double = Date().timeIntervalSince1970) throws {
        precondition(gradient.count == network.trainableCount, "appendHistograms: the gradient covers \(gradient.count) of \(network.trainableCount) trainable floats")
        let tensors = Array(network.layout.trainableTensors)
        let parameters = UnsafeBufferPointer(network.parameters)
        var values = tensors.map { slot in
            (tag: "weights/" + slot.name, histogram: TensorHistogram(UnsafeBufferPointer(rebasing: parameters[slot.offset..<slot.offset + slot.count])))
        }
        gradient.withUnsafeBufferPointer { gradient in
            values += tensors.map { slot in
                (tag: "gradients/" + slot.name, histogram: TensorHistogram(UnsafeBufferPointer(rebasing: gradient[slot.offset..<slot.offset + slot.count])))
            }
        }
        try TFRecord.frame(TensorBoardEvent.histograms(values, step: epoch, wallTime: wallTime)).withUnsafeBytes { try write(framed: $0) }
    }
}
