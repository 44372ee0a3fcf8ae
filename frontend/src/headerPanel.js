// The DICOM header on demand: fetched from /api/v1/images/<id>/header/ when first opened (the
// server decides which identifiers this user may see, and audits the view), shown as a
// filterable table.
export class HeaderPanel {
  constructor(panel, url) {
    this.panel = panel;
    this.url = url;
    this.loaded = null;
    this.body = panel.querySelector("[data-header-rows]");
    this.status = panel.querySelector("[data-header-status]");
    this.filter = panel.querySelector("[data-header-filter]");
    this.filter?.addEventListener("input", () => this.applyFilter());
  }

  get open() {
    return !this.panel.hidden;
  }

  toggle(force) {
    const open = force ?? !this.open;
    this.panel.hidden = !open;
    if (open) this.loaded ||= this.load();
    return open;
  }

  async load() {
    this.status.textContent = "Loading the header…";
    try {
      const response = await fetch(this.url, {
        credentials: "same-origin",
        headers: { Accept: "application/json" },
      });
      const body = await response.json();
      if (!response.ok) throw new Error(body.detail || `HTTP ${response.status}`);
      this.render(body);
    } catch (error) {
      this.status.textContent = `The header could not be shown: ${error.message}`;
      this.loaded = null;
    }
  }

  render(header) {
    const rows = header.elements.map((element) => {
      const row = document.createElement("tr");
      row.dataset.keyword = element.keyword;
      const cells = [element.tag, element.keyword || element.name, element.vr, element.value];
      cells.forEach((text, index) => {
        const cell = document.createElement(index === 1 ? "th" : "td");
        if (index === 1) cell.scope = "row";
        cell.textContent = text;
        if (index === 1 && element.depth) cell.style.paddingLeft = `${element.depth * 1.2 + 0.4}rem`;
        row.append(cell);
      });
      return row;
    });
    this.body.replaceChildren(...rows);
    const omitted = header.identifiers_shown
      ? ""
      : ` ${header.omitted} identifying elements are not shown to you.`;
    this.status.textContent = `${header.elements.length} elements, pixel data not included.${omitted}`;
    this.applyFilter();
  }

  applyFilter() {
    const needle = (this.filter?.value || "").trim().toLowerCase();
    for (const row of this.body.rows) {
      row.hidden = Boolean(needle) && !row.textContent.toLowerCase().includes(needle);
    }
  }
}
