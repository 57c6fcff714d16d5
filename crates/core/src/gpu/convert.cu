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
