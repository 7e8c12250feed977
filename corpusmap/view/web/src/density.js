// Density of all points as an image under the scatter plot, for maps too big to draw every point (the writer
// then draws a random sample on top). The image covers the writer's normalised square [-1, 1]^2.

export class DensityLayer {
  constructor(canvas, dataUrl, onReady) {
    this.canvas = canvas;
    this.ctx = canvas.getContext('2d');
    this.image = new Image();
    this.ready = false;
    this.image.onload = () => {
      this.ready = true;
      onReady();
    };
    this.image.src = dataUrl;
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
    if (!this.ready) return;
    const [x0, y0] = project(-1, 1);
    const [x1, y1] = project(1, -1);
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.imageSmoothingEnabled = true;
    ctx.drawImage(this.image, x0, y0, x1 - x0, y1 - y0);
  }
}
