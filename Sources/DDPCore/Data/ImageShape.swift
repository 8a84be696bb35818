/// The shape of one image sample, (height, width, channels), stored channels-last (Keras's
/// default "channels_last"; NumPy's (H, W, C) flattened in C order): feature index
/// (y·width + x)·channels + c. The network sees the flattened row; augmentation uses the shape.
public struct ImageShape: Sendable, Equatable, Codable, CustomStringConvertible {
    public var height: Int
    public var width: Int
    public var channels: Int

    public init(height: Int, width: Int, channels: Int = 1) {
        self.height = height
        self.width = width
        self.channels = channels
    }

    public var featureCount: Int { height * width * channels }

    /// The most values one sample may have (2³¹ − 1: a row's offsets stay in Int32 range).
    public static let maximumFeatures = Int(Int32.max)

    /// "(28, 28, 1)": the Keras input shape without the batch dimension.
    public var description: String { "(\(height), \(width), \(channels))" }
}

extension ImageShape {
    /// `data.image_shape: [H, W, C]` (or [H, W], one channel).
    static func parse(_ section: inout ConfigSection, _ name: String) throws -> ImageShape? {
        guard let node = section.node(name) else { return nil }
        let key = section.key(name)
        guard let list = node.sequence, list.count == 2 || list.count == 3 else {
            throw DDPError(.config, "\(key): expected a list [height, width, channels], got '\(ConfigSection.describe(node))'")
        }
        var values: [Int] = []
        for item in list {
            guard let value = Int(item.scalar?.string ?? ""), value >= 1 else {
                throw DDPError(.config, "\(key): expected positive integers [height, width, channels], got '\(ConfigSection.describe(item))'")
            }
            values.append(value)
        }
        // The product sizes buffers: it must fit comfortably in an Int, not just exist.
        let product = values.reduce((value: 1, overflow: false)) { total, value in
            let next = total.value.multipliedReportingOverflow(by: value)
            return (next.partialValue, total.overflow || next.overflow || next.partialValue > ImageShape.maximumFeatures)
        }
        guard !product.overflow else {
            throw DDPError(.config, "\(key): \(values.map(String.init).joined(separator: " × ")) values per sample is more than any image "
                           + "ddp can hold (at most \(ImageShape.maximumFeatures))")
        }
        return ImageShape(height: values[0], width: values[1], channels: values.count == 3 ? values[2] : 1)
    }
}
