// Host images <-> the core's frames (8-bit RGB plus an alpha plane, packed, top row first),
// one thread per pixel. Compiled at run time by NVRTC (gpu/convert.rs); gpu/pixels.rs is the
// reference these kernels must match bit for bit.
//
// format: 0 = RGBA f32, 1 = RGBA8, 2 = BGRA8 (PixelFormat::kernel_code).
// top_row: the picture's top row; down_step: bytes from a row to the one below (may be < 0).

__device__ unsigned char quantise(float v)
{
    // fmaxf(NaN, 0) is 0: NaN reads as 0, as on the CPU.
    return (unsigned char)roundf(fminf(fmaxf(v, 0.0f), 1.0f) * 255.0f);
}

extern "C" __global__ void import_image(
    const unsigned char *top_row, long long down_step, int format, int width, int height,
    unsigned char *rgb, unsigned char *alpha)
{
    const int x = blockIdx.x * blockDim.x + threadIdx.x;
    const int y = blockIdx.y * blockDim.y + threadIdx.y;
    if (x >= width || y >= height) {
        return;
    }
    const unsigned char *row = top_row + (long long)y * down_step;
    unsigned char r, g, b, a;
    if (format == 0) {
        const float *p = (const float *)row + 4LL * x;
        r = quantise(p[0]);
        g = quantise(p[1]);
        b = quantise(p[2]);
        a = quantise(p[3]);
    } else {
        const unsigned char *p = row + 4LL * x;
        r = format == 1 ? p[0] : p[2];
        g = p[1];
        b = format == 1 ? p[2] : p[0];
        a = p[3];
    }
    const long long i = (long long)y * width + x;
    rgb[3 * i] = r;
    rgb[3 * i + 1] = g;
    rgb[3 * i + 2] = b;
    alpha[i] = a;
}

// alpha may be null: the output is opaque.
extern "C" __global__ void export_image(
    const unsigned char *rgb, const unsigned char *alpha, int format, int width, int height,
    unsigned char *top_row, long long down_step)
{
    const int x = blockIdx.x * blockDim.x + threadIdx.x;
    const int y = blockIdx.y * blockDim.y + threadIdx.y;
    if (x >= width || y >= height) {
        return;
    }
    const long long i = (long long)y * width + x;
    const unsigned char r = rgb[3 * i], g = rgb[3 * i + 1], b = rgb[3 * i + 2];
    const unsigned char a = alpha ? alpha[i] : 255;
    unsigned char *row = top_row + (long long)y * down_step;
    if (format == 0) {
        float *p = (float *)row + 4LL * x;
        p[0] = r / 255.0f;
        p[1] = g / 255.0f;
        p[2] = b / 255.0f;
        p[3] = a / 255.0f;
    } else {
        unsigned char *p = row + 4LL * x;
        p[0] = format == 1 ? r : b;
        p[1] = g;
        p[2] = format == 1 ? b : r;
        p[3] = a;
    }
}

// Writes region (left, top, width x height) of the output picture, one thread per pixel. At
// output pixel (x, y) the source, if given, has its pixel (x - source_left, y - source_top)
// when that lies inside it, and the frame (8-bit RGB, frame_width x frame_height) likewise.
//   No frame (copy): the source's pixel, bytes as they are; zero where the source has none.
//   A frame (generated): zero outside the frame; else the frame's pixel, opaque, except where
//   the source's pixel reads as exactly that colour: then the source's pixel itself, opaque,
//   so kept pixels stay bit-identical at full precision.
// The source has the output's format.
extern "C" __global__ void compose_region(
    unsigned char *out_top, long long out_step, int format, int left, int top, int width, int height,
    const unsigned char *source_top, long long source_step, long long source_left, long long source_top_row,
    int source_width, int source_height,
    const unsigned char *rgb, long long frame_left, long long frame_top, int frame_width, int frame_height)
{
    const int rx = blockIdx.x * blockDim.x + threadIdx.x;
    const int ry = blockIdx.y * blockDim.y + threadIdx.y;
    if (rx >= width || ry >= height) {
        return;
    }
    const long long x = left + rx, y = top + ry;
    const int pixel_bytes = format == 0 ? 16 : 4;
    unsigned char *out = out_top + y * out_step + x * pixel_bytes;

    const unsigned char *source = 0;
    const long long sx = x - source_left, sy = y - source_top_row;
    if (source_top && sx >= 0 && sx < source_width && sy >= 0 && sy < source_height) {
        source = source_top + sy * source_step + sx * pixel_bytes;
    }
    if (!rgb) {
        for (int i = 0; i < pixel_bytes; i++) {
            out[i] = source ? source[i] : 0;
        }
        return;
    }
    const long long fx = x - frame_left, fy = y - frame_top;
    if (fx < 0 || fx >= frame_width || fy < 0 || fy >= frame_height) {
        for (int i = 0; i < pixel_bytes; i++) {
            out[i] = 0;
        }
        return;
    }
    const unsigned char *p = rgb + 3 * (fy * frame_width + fx);
    bool keep = false;
    if (source) {
        unsigned char r, g, b;
        if (format == 0) {
            const float *s = (const float *)source;
            r = quantise(s[0]);
            g = quantise(s[1]);
            b = quantise(s[2]);
        } else {
            r = format == 1 ? source[0] : source[2];
            g = source[1];
            b = format == 1 ? source[2] : source[0];
        }
        keep = r == p[0] && g == p[1] && b == p[2];
    }
    if (format == 0) {
        float *o = (float *)out;
        if (keep) {
            const float *s = (const float *)source;
            o[0] = s[0];
            o[1] = s[1];
            o[2] = s[2];
        } else {
            o[0] = p[0] / 255.0f;
            o[1] = p[1] / 255.0f;
            o[2] = p[2] / 255.0f;
        }
        o[3] = 1.0f;
    } else {
        const unsigned char r = keep ? (format == 1 ? source[0] : source[2]) : p[0];
        const unsigned char g = keep ? source[1] : p[1];
        const unsigned char b = keep ? (format == 1 ? source[2] : source[0]) : p[2];
        out[0] = format == 1 ? r : b;
        out[1] = g;
        out[2] = format == 1 ? b : r;
        out[3] = 255;
    }
}
