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
        return ImageShape(height: values[0], width: values[1], channels: values.count == 3 ? values[2] : 1)
    }
}
