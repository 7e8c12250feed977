// Images under the scatter plot, each covering the writer's normalised square [-1, 1]^2: the grey density of a
// reference map that the points were placed into, and the density of all points for maps too big to draw every
// point (the writer then draws a random sample on top).

export class DensityLayer {
  constructor(canvas, onReady) {
    this.canvas = canvas;
    this.ctx = canvas.getContext('2d');
    this.images = [];
    this.onReady = onReady;
  }

  /** Add an image (a PNG data URL) above those added before. */
  add(dataUrl) {
    const image = new Image();
    image.onload = () => {
      image.ready = true;
      this.onReady();
    };
    image.src = dataUrl;
    this.images.push(image);
  }

  /** Draw with project(x, y) -> [screenX, screenY] for the current camera. */
  draw(project, width, height) {
    const dpr = window.devicePixelRatio || 1;
    if (this.canvas.width !== Math.round(width * dpr) || this.canvas.height !== Math.round(height * dpr)) {
      this.canvas.width = Math.round(width * dpr);
      this.canvas.height = Math.round(height * dpr);
    }
    const ctx = this.ctx;
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.clearRect(0, 0, this.canvas.width, this.canvas.height);
    const [x0, y0] = project(-1, 1);
    const [x1, y1] = project(1, -1);
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.imageSmoothingEnabled = true;
    for (const image of this.images) if (image.ready) ctx.drawImage(image, x0, y0, x1 - x0, y1 - y0);
  }
}
