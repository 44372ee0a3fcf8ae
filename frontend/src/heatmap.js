// The Grad-CAM heatmap over the image. The PNG is small (256 px long side), with the original's
// aspect ratio, so it is stretched over the image's extent: its corners are the image's
// corners, mapped from image pixels to the canvas on every render (any zoom, pan or flip).
export class HeatmapLayer {
  constructor(canvas, viewport) {
    this.canvas = canvas;
    this.viewport = viewport;
    this.picture = null;
    this.visible = true;
    this.opacity = 0.5;
  }

  async load(url) {
    const picture = new Image();
    picture.src = url;
    await picture.decode();
    this.picture = picture;
    this.draw();
  }

  set(visible, opacity) {
    this.visible = visible;
    this.opacity = opacity;
    this.draw();
  }

  draw() {
    const { canvas, viewport, picture } = this;
    const ratio = window.devicePixelRatio || 1;
    const width = Math.round(viewport.element.clientWidth * ratio);
    const height = Math.round(viewport.element.clientHeight * ratio);
    if (canvas.width !== width || canvas.height !== height) {
      canvas.width = width;
      canvas.height = height;
    }
    const context = canvas.getContext("2d");
    context.setTransform(1, 0, 0, 1, 0, 0);
    context.clearRect(0, 0, width, height);
    const corners = picture && this.visible ? imageCorners(viewport) : null;
    if (!corners) return;
    const [origin, right, down] = corners.map(([x, y]) => [x * ratio, y * ratio]);
    const w = picture.naturalWidth;
    const h = picture.naturalHeight;
    context.globalAlpha = this.opacity;
    context.setTransform(
      (right[0] - origin[0]) / w,
      (right[1] - origin[1]) / w,
      (down[0] - origin[0]) / h,
      (down[1] - origin[1]) / h,
      origin[0],
      origin[1],
    );
    context.drawImage(picture, 0, 0);
  }
}

// Canvas positions (CSS px) of the image's top-left, top-right and bottom-left corners:
// pixel centres are at whole indices, so the image's edges are half a pixel outside them.
export function imageCorners(viewport) {
  const data = viewport.getImageData();
  if (!data) return null;
  const [columns, rows] = data.dimensions;
  const toCanvas = (i, j) => viewport.worldToCanvas(data.imageData.indexToWorld([i, j, 0]));
  return [toCanvas(-0.5, -0.5), toCanvas(columns - 0.5, -0.5), toCanvas(-0.5, rows - 0.5)];
}
