/// How a parameter tensor's stored order maps to the order of the file it is exported in
/// (torch's state_dict). Most tensors are stored as torch holds them. Two are not, because the
/// step reads them in channels-last order:
/// - a conv kernel, stored (out, kh, kw, in) so each output pixel is one GEMM row over its
///   patch's contiguous channels, exported [out, in, kh, kw] as nn.Conv2d's weight;
/// - a dense kernel after a `flatten`, stored (units, H, W, C) as the flattened channels-last
///   features arrive, exported [units, C·H·W] as nn.Linear after nn.Flatten of NCHW activations.
/// - a BatchNorm's per-feature tensors after a `flatten`, stored (H, W, C), exported (C·H·W) as
///   BatchNorm1d after nn.Flatten sees them.
/// Export and import permute once per file, never per step.
public struct ExportLayout: Sendable, Equatable {
    /// The tensor's dimensions as stored in the flat buffer, row-major.
    public let storedDims: [Int]
    /// Dimension i of the file's (unmerged) order is stored dimension `order[i]`.
    public let order: [Int]
    /// The shape the file holds: the permuted dimensions, some merged (a flattened image's).
    public let fileShape: [Int]

    public init(storedDims: [Int], order: [Int], fileShape: [Int]) {
        precondition(order.sorted() == Array(storedDims.indices), "ExportLayout: order must permute the stored dimensions")
        precondition(fileShape.reduce(1, *) == storedDims.reduce(1, *), "ExportLayout: the file shape must hold every value")
        self.storedDims = storedDims
        self.order = order
        self.fileShape = fileShape
    }

    /// Stored as exported.
    public static func identity(_ shape: [Int]) -> ExportLayout {
        ExportLayout(storedDims: shape, order: Array(shape.indices), fileShape: shape)
    }

    /// A conv kernel stored (out, kh, kw, in), exported [out, in, kh, kw] (nn.Conv2d).
    public static func convKernel(out: Int, kernelHeight: Int, kernelWidth: Int, in channels: Int) -> ExportLayout {
        ExportLayout(storedDims: [out, kernelHeight, kernelWidth, channels], order: [0, 3, 1, 2],
                     fileShape: [out, channels, kernelHeight, kernelWidth])
    }

    /// A dense kernel reading a flattened (H, W, C) image, stored (units, H, W, C), exported
    /// [units, C·H·W] (nn.Linear after nn.Flatten of (C, H, W) activations).
    public static func denseAfterFlatten(units: Int, image: ImageShape) -> ExportLayout {
        ExportLayout(storedDims: [units, image.height, image.width, image.channels], order: [0, 3, 1, 2],
                     fileShape: [units, image.featureCount])
    }

    /// Per-feature values of a flattened (H, W, C) image, stored in that order, exported in
    /// nn.Flatten's (C, H, W) order (a BatchNorm1d after flatten).
    public static func flattenedFeatures(image: ImageShape) -> ExportLayout {
        ExportLayout(storedDims: [image.height, image.width, image.channels], order: [2, 0, 1], fileShape: [image.featureCount])
    }

    public var isIdentity: Bool { order == Array(order.indices) }

    /// For each element of the file's order, its index in the stored order.
    private func storedIndices() -> [Int] {
        var strides = Array(repeating: 1, count: storedDims.count)
        for i in storedDims.indices.reversed().dropFirst() { strides[i] = strides[i + 1] * storedDims[i + 1] }
        let dims = order.map { storedDims[$0] }, stepStrides = order.map { strides[$0] }
        var result: [Int] = []
        result.reserveCapacity(dims.reduce(1, *))
        var coordinate = Array(repeating: 0, count: dims.count)
        for _ in 0..<dims.reduce(1, *) {
            result.append(zip(coordinate, stepStrides).reduce(0) { $0 + $1.0 * $1.1 })
            var axis = dims.count - 1
            while axis >= 0 {
                coordinate[axis] += 1
                if coordinate[axis] < dims[axis] { break }
                coordinate[axis] = 0
                axis -= 1
            }
        }
        return result
    }

    /// The stored values as the file's tensor.
    func export(_ values: UnsafeBufferPointer<Float>, name: String) -> StoredTensor {
        guard !isIdentity else { return StoredTensor(name: name, shape: fileShape, floats: values) }
        return StoredTensor(name: name, shape: fileShape, floats: storedIndices().map { values[$0] })
    }

    /// The file's tensor (shape already checked) into the stored order.
    func load(_ tensor: StoredTensor, into destination: UnsafeMutableBufferPointer<Float>, file: String) throws {
        guard !isIdentity else { return try tensor.copyFloats(into: destination, file: file) }
        var fileOrder = [Float](repeating: 0, count: destination.count)
        try fileOrder.withUnsafeMutableBufferPointer { try tensor.copyFloats(into: $0, file: file) }
        for (fileIndex, storedIndex) in storedIndices().enumerated() { destination[storedIndex] = fileOrder[fileIndex] }
    }
}
