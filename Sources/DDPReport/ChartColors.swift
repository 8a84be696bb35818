import Foundation

/// An sRGB color with components in 0…1.
public struct RGB: Sendable, Equatable {
    public var r: Double, g: Double, b: Double

    public init(r: Double, g: Double, b: Double) { (self.r, self.g, self.b) = (r, g, b) }

    public init(hex: UInt32) {
        r = Double(hex >> 16 & 0xFF) / 255
        g = Double(hex >> 8 & 0xFF) / 255
        b = Double(hex & 0xFF) / 255
    }

    public static let white = RGB(hex: 0xFFFFFF)

    /// `#rrggbb`.
    public var hex: String {
        func byte(_ v: Double) -> Int { Int((min(1, max(0, v)) * 255).rounded()) }
        return String(format: "#%02x%02x%02x", byte(r), byte(g), byte(b))
    }

    /// self·(1 − t) + other·t.
    public func mixed(with other: RGB, _ t: Double) -> RGB {
        RGB(r: r + (other.r - r) * t, g: g + (other.g - g) * t, b: b + (other.b - b) * t)
    }
}

/// matplotlib's "tab10" colors, the default cycle of most plotting libraries.
public enum Palette {
    public static let tab10: [RGB] = [0x1f77b4, 0xff7f0e, 0x2ca02c, 0xd62728, 0x9467bd,
                                      0x8c564b, 0xe377c2, 0x7f7f7f, 0xbcbd22, 0x17becf].map { RGB(hex: $0) }
    public static func color(_ index: Int) -> RGB { tab10[((index % tab10.count) + tab10.count) % tab10.count] }
    /// viridis at 0…1 (five anchors, linear between them), for continuous values.
    public static func viridis(_ t: Double) -> RGB {
        let anchors: [RGB] = [0x440154, 0x3b528b, 0x21918c, 0x5ec962, 0xfde725].map { RGB(hex: $0) }
        let x = min(1, max(0, t.isFinite ? t : 0)) * Double(anchors.count - 1)
        let i = min(anchors.count - 2, Int(x))
        return anchors[i].mixed(with: anchors[i + 1], x - Double(i))
    }
    static let text = "#222222", axis = "#444444", grid = "#e6e6e6", muted = "#666666"
}
