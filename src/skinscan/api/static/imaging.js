// The engine's image steps before the model, for judging on the device: Pillow's box reduce and antialiased
// bilinear resize (its C code's fixed-point arithmetic, ported so that the device's 224×224 pixels are the engine's
// to the level; tests/test_device.py compares the results), its RGB → grey conversion and thumbnail, and
// core/preprocess.py's dark-border trim and square crop. What comes after (colour constancy, quality measures,
// normalisation) is in the pixel graph, static/prepare.onnx, not here.
//
// An image is { width, height, bands, data }: `bands` values per pixel (4 for RGB, the fourth unused, as Pillow
// stores it; 1 for grey), or a Float32Array of one band for the heatmap's cells.

const PRECISION_BITS = 32 - 8 - 2;
const DARK = 40; // core/preprocess.py: grey level under which a pixel counts as border black
const BORDER_ROW = 0.92; // a row or column this dark all along is border
const MIN_KEPT = 0.5; // never cut more than half of a side

/** Python's round(): halves go to the even neighbour. */
export function pyRound(value) {
  const rounded = Math.round(value);
  return Math.abs(value % 1) === 0.5 && rounded % 2 !== 0 ? rounded - 1 : rounded;
}

export function newImage(width, height, bands, float = false) {
  const data = float ? new Float32Array(width * height * bands) : new Uint8ClampedArray(width * height * bands);
  return { width, height, bands, data };
}

// --- Image.reduce (libImaging/Reduce.c) -----------------------------------------------------------------------

function divisionMultiplier(divider) {
  // division_UINT32: computed in single precision, as the C code does
  return Math.trunc(Math.fround(4294967296 / Math.fround(256 * divider)));
}

function reducedValue(sum, count) {
  const amended = sum + Math.floor(count / 2);
  return Math.floor(((amended * divisionMultiplier(count)) % 4294967296) / 16777216);
}

/** Image.reduce(factor, box): the mean of each xscale×yscale block of `box`, the last row and column of partial
 * blocks averaged over what they hold. */
export function reduce(image, xscale, yscale, box = [0, 0, image.width, image.height]) {
  const [x0, y0, x1, y1] = box;
  const width = x1 - x0;
  const height = y1 - y0;
  const out = newImage(Math.ceil(width / xscale), Math.ceil(height / yscale), image.bands);
  const { bands, data } = image;
  const stride = image.width * bands;
  for (let y = 0; y < out.height; y++) {
    const top = y0 + y * yscale;
    const rows = Math.min(yscale, y1 - top);
    for (let x = 0; x < out.width; x++) {
      const left = x0 + x * xscale;
      const cols = Math.min(xscale, x1 - left);
      for (let c = 0; c < bands; c++) {
        let sum = 0;
        for (let yy = top; yy < top + rows; yy++) {
          let at = yy * stride + left * bands + c;
          for (let xx = 0; xx < cols; xx++, at += bands) sum += data[at];
        }
        out.data[(y * out.width + x) * bands + c] = reducedValue(sum, rows * cols);
      }
    }
  }
  return out;
}

/** runtime/imaging.py's reduce_factor: the largest of 1, 2, 4, 8 that keeps each side at least `draftSize`. */
export function reduceFactor(width, height, draftSize) {
  const room = Math.min(Math.floor(width / draftSize), Math.floor(height / draftSize));
  return [8, 4, 2].find((f) => room >= f) || 1;
}

// --- Image.resize with the bilinear filter (libImaging/Resample.c) --------------------------------------------

function bilinear(x) {
  const ax = Math.abs(x);
  return ax < 1 ? 1 - ax : 0;
}

function coefficients(inSize, in0, in1, outSize) {
  // the box arrives as C floats; their difference too is a float
  const start = Math.fround(in0);
  const scale = Math.fround(Math.fround(in1) - start) / outSize;
  const filterscale = Math.max(scale, 1);
  const support = filterscale; // the bilinear filter's support is 1
  const ksize = Math.ceil(support) * 2 + 1;
  const bounds = new Int32Array(outSize * 2);
  const kk = new Float64Array(outSize * ksize);
  for (let xx = 0; xx < outSize; xx++) {
    const center = start + (xx + 0.5) * scale;
    const ss = 1 / filterscale;
    const xmin = Math.max(0, Math.trunc(center - support + 0.5));
    const xmax = Math.min(inSize, Math.trunc(center + support + 0.5)) - xmin;
    let ww = 0;
    for (let x = 0; x < xmax; x++) {
      const w = bilinear((x + xmin - center + 0.5) * ss);
      kk[xx * ksize + x] = w;
      ww += w;
    }
    if (ww !== 0) for (let x = 0; x < xmax; x++) kk[xx * ksize + x] /= ww;
    bounds[xx * 2] = xmin;
    bounds[xx * 2 + 1] = xmax;
  }
  return { bounds, kk, ksize };
}

function fixedPoint(kk) {
  const scale = 2 ** PRECISION_BITS;
  return Int32Array.from(kk, (k) => Math.trunc(k < 0 ? -0.5 + k * scale : 0.5 + k * scale));
}

function clip8(sum) {
  const value = sum >> PRECISION_BITS;
  return value < 0 ? 0 : value > 255 ? 255 : value;
}

function passHorizontal(image, rows, offset, { bounds, kk, ksize }, outWidth) {
  const float = image.data instanceof Float32Array;
  const out = newImage(outWidth, rows, image.bands, float);
  const weights = float ? kk : fixedPoint(kk);
  const { bands, data, width } = image;
  for (let y = 0; y < rows; y++) {
    const line = (y + offset) * width * bands;
    for (let x = 0; x < outWidth; x++) {
      const xmin = bounds[x * 2];
      const count = bounds[x * 2 + 1];
      for (let c = 0; c < bands; c++) {
        let sum = float ? 0 : 1 << (PRECISION_BITS - 1);
        for (let i = 0; i < count; i++) sum += data[line + (xmin + i) * bands + c] * weights[x * ksize + i];
        out.data[(y * outWidth + x) * bands + c] = float ? sum : clip8(sum);
      }
    }
  }
  return out;
}

function passVertical(image, outHeight, { bounds, kk, ksize }) {
  const float = image.data instanceof Float32Array;
  const out = newImage(image.width, outHeight, image.bands, float);
  const weights = float ? kk : fixedPoint(kk);
  const { bands, data, width } = image;
  for (let y = 0; y < outHeight; y++) {
    const ymin = bounds[y * 2];
    const count = bounds[y * 2 + 1];
    for (let x = 0; x < width; x++) {
      for (let c = 0; c < bands; c++) {
        let sum = float ? 0 : 1 << (PRECISION_BITS - 1);
        for (let i = 0; i < count; i++) sum += data[((ymin + i) * width + x) * bands + c] * weights[y * ksize + i];
        out.data[(y * width + x) * bands + c] = float ? sum : clip8(sum);
      }
    }
  }
  return out;
}

function resample(image, width, height, box) {
  const [b0, b1, b2, b3] = box.map(Math.fround);
  const needHorizontal = width !== image.width || b0 !== 0 || b2 !== width;
  const needVertical = height !== image.height || b1 !== 0 || b3 !== height;
  const vertical = coefficients(image.height, b1, b3, height);
  const first = vertical.bounds[0];
  const last = vertical.bounds[height * 2 - 2] + vertical.bounds[height * 2 - 1];
  let current = image;
  if (needHorizontal) {
    const horizontal = coefficients(image.width, b0, b2, width);
    for (let i = 0; i < height; i++) vertical.bounds[i * 2] -= first;
    current = passHorizontal(image, last - first, first, horizontal, width);
  }
  if (needVertical) return passVertical(current, height, vertical);
  return current === image ? { ...image, data: image.data.slice() } : current;
}

/** Image.resize((width, height), Image.Resampling.BILINEAR, box, reducing_gap). */
export function resize(image, width, height, box = [0, 0, image.width, image.height], reducingGap = null) {
  if (width === image.width && height === image.height && box[0] === 0 && box[1] === 0 && box[2] === image.width &&
      box[3] === image.height) {
    return { ...image, data: image.data.slice() };
  }
  let source = image;
  let region = box;
  if (reducingGap !== null) {
    const fx = Math.trunc((box[2] - box[0]) / width / reducingGap) || 1;
    const fy = Math.trunc((box[3] - box[1]) / height / reducingGap) || 1;
    if (fx > 1 || fy > 1) {
      // Image._get_safe_box: the box widened by the filter's support, in whole pixels
      const sx = 0.5 * ((box[2] - box[0]) / width);
      const sy = 0.5 * ((box[3] - box[1]) / height);
      const safe = [Math.max(0, Math.trunc(box[0] - sx)), Math.max(0, Math.trunc(box[1] - sy)),
        Math.min(image.width, Math.ceil(box[2] + sx)), Math.min(image.height, Math.ceil(box[3] + sy))];
      source = reduce(image, fx, fy, safe);
      region = [(box[0] - safe[0]) / fx, (box[1] - safe[1]) / fy, (box[2] - safe[0]) / fx, (box[3] - safe[1]) / fy];
    }
  }
  return resample(source, width, height, region);
}

// --- grey, thumbnail, and the analysed region (core/preprocess.py) --------------------------------------------

/** Image.convert("L"): ITU-R 601-2 luma in Pillow's fixed point. */
export function toGrey(image) {
  const out = newImage(image.width, image.height, 1);
  const { data, bands } = image;
  for (let i = 0, j = 0; j < out.data.length; i += bands, j++) {
    out.data[j] = (data[i] * 19595 + data[i + 1] * 38470 + data[i + 2] * 7471 + 0x8000) >> 16;
  }
  return out;
}

function roundAspect(number, key) {
  const low = Math.floor(number);
  const high = Math.ceil(number);
  return Math.max(key(high) < key(low) ? high : low, 1); // min() keeps the first of equals
}

/** Image.thumbnail((size, size), BILINEAR, reducing_gap=2.0), returning the new image. */
export function thumbnail(image, size) {
  if (size >= image.width && size >= image.height) return image;
  const aspect = image.width / image.height;
  let x = size;
  let y = size;
  if (x / y >= aspect) x = roundAspect(y * aspect, (n) => Math.abs(aspect - n / y));
  else y = roundAspect(x / aspect, (n) => (n === 0 ? 0 : Math.abs(aspect - x / n)));
  if (x === image.width && y === image.height) return image;
  return resize(image, x, y, undefined, 2.0);
}

/** dark_border_box: the image's box without uniform dark borders, found on a 256-pixel grey thumbnail. */
export function darkBorderBox(image) {
  const { width, height } = image;
  const thumb = thumbnail(toGrey(image), 256);
  const dark = (x, y) => thumb.data[y * thumb.width + x] < DARK;
  const rows = [];
  for (let y = 0; y < thumb.height; y++) {
    let count = 0;
    for (let x = 0; x < thumb.width; x++) count += dark(x, y);
    rows.push(count / thumb.width < BORDER_ROW);
  }
  const cols = [];
  for (let x = 0; x < thumb.width; x++) {
    let count = 0;
    for (let y = 0; y < thumb.height; y++) count += dark(x, y);
    cols.push(count / thumb.height < BORDER_ROW);
  }
  if (!rows.includes(true) || !cols.includes(true)) return [0, 0, width, height];
  const top = rows.indexOf(true);
  const bottom = rows.lastIndexOf(true) + 1;
  const left = cols.indexOf(true);
  const right = cols.lastIndexOf(true) + 1;
  if (bottom - top < MIN_KEPT * rows.length || right - left < MIN_KEPT * cols.length) return [0, 0, width, height];
  const sx = width / thumb.width;
  const sy = height / thumb.height;
  return [pyRound(left * sx), pyRound(top * sy), pyRound(right * sx), pyRound(bottom * sy)];
}

/** square_crop_box: the centred square. */
export function squareCropBox(width, height) {
  const side = Math.min(width, height);
  const left = Math.floor((width - side) / 2);
  const top = Math.floor((height - side) / 2);
  return [left, top, left + side, top + side];
}

/** analysed_box: the part of the image the model sees. */
export function analysedBox(image, crop) {
  if (crop === "resize") return [0, 0, image.width, image.height];
  if (crop === "center_square") return squareCropBox(image.width, image.height);
  const [left, top, right, bottom] = darkBorderBox(image);
  const [l2, t2, r2, b2] = squareCropBox(right - left, bottom - top);
  return [left + l2, top + t2, left + r2, top + b2];
}

/** The model's S×S RGB pixels before colour constancy, packed 3 bytes a pixel for the pixel graph. */
export function modelPixels(image, crop, size) {
  const resized = resize(image, size, size, analysedBox(image, crop), 2.0);
  const packed = new Uint8Array(size * size * 3);
  for (let i = 0, j = 0; j < packed.length; i += resized.bands, j += 3) {
    packed[j] = resized.data[i];
    packed[j + 1] = resized.data[i + 1];
    packed[j + 2] = resized.data[i + 2];
  }
  return packed;
}
