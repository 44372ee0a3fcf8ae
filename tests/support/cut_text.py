"""A page check for the end-to-end tests: which text the page cuts (issue 23, "no cut
text"), evaluated in the browser."""

# What is cut on the page, one line each; [] when nothing is. Looked at:
# - every visible HTML element (larger than the 1 x 1 px of text for screen readers only)
#   with a non-blank text node child (form controls, whose value
#   scrolls inside them, and scripts left out), not inline (an inline box has no client
#   width): its text is cut, or spills over its neighbours, when scrollWidth > clientWidth
#   (or scrollHeight > clientHeight where computed overflow-y is not "visible"), unless the
#   box scrolls (overflow "auto" or "scroll": the rest is a scroll away);
# - the same elements' right edge beyond the page's width (cut by the window);
# - text cut by the server: a text node with "…" whose element does not carry the whole
#   text in its title;
# - every SVG <text> of a visible <svg>: its getBBox(), mapped into the <svg>'s user space
#   (its own transforms), must lie within the viewBox (the viewport when there is none).
CUT_TEXT_JS = r"""
() => {
  const cut = [];
  const name = (el) => el.tagName.toLowerCase() + (el.id ? '#' + el.id : '')
    + (typeof el.className === 'string' && el.className.trim()
       ? '.' + el.className.trim().split(/\s+/).join('.') : '')
    + ' "' + (el.textContent || '').trim().replace(/\s+/g, ' ').slice(0, 140) + '"';
  const shown = (el) => {
    const style = getComputedStyle(el);
    if (style.display === 'none' || style.visibility !== 'visible') return false;
    const rect = el.getBoundingClientRect();
    // 1 x 1 px: text for screen readers only, clipped on purpose (.visually-hidden).
    return rect.width > 1 && rect.height > 1;
  };
  const texts = (el) => [...el.childNodes].filter(
    (n) => n.nodeType === Node.TEXT_NODE && n.textContent.trim() !== '');
  const skip = ['INPUT', 'SELECT', 'TEXTAREA', 'OPTION', 'SCRIPT', 'STYLE', 'NOSCRIPT'];
  const scrolls = ['auto', 'scroll'];
  const pageWidth = document.documentElement.clientWidth;
  for (const el of document.body.querySelectorAll('*')) {
    if (el instanceof SVGElement || skip.includes(el.tagName)) continue;
    const own = texts(el);
    if (own.length === 0 || !shown(el)) continue;
    const style = getComputedStyle(el);
    if (style.display !== 'inline') {
      if (!scrolls.includes(style.overflowX) && el.scrollWidth > el.clientWidth + 1) {
        cut.push(`wider than its box (${el.scrollWidth} > ${el.clientWidth}): ${name(el)}`);
      }
      if (style.overflowY !== 'visible' && !scrolls.includes(style.overflowY)
          && el.scrollHeight > el.clientHeight + 1) {
        cut.push(`taller than its box (${el.scrollHeight} > ${el.clientHeight}): ${name(el)}`);
      }
    }
    const right = el.getBoundingClientRect().right;
    if (right > pageWidth + 1) {
      cut.push(`beyond the page (${Math.round(right)} > ${pageWidth}): ${name(el)}`);
    }
    const whole = el.getAttribute('title') || '';
    if (own.some((n) => n.textContent.includes('…')) && (!whole || whole.includes('…'))) {
      cut.push(`cut short by the server: ${name(el)}`);
    }
  }
  for (const text of document.querySelectorAll('svg text')) {
    const svg = text.ownerSVGElement;
    if (!svg || !shown(svg) || !shown(text)) continue;
    const box = text.getBBox();
    const toSvg = svg.getScreenCTM().inverse().multiply(text.getScreenCTM());
    const [left, top, right, bottom] = [box.x, box.y, box.x + box.width, box.y + box.height];
    const corners = [[left, top], [right, top], [left, bottom], [right, bottom]]
      .map(([x, y]) => new DOMPoint(x, y).matrixTransform(toSvg));
    const vb = svg.viewBox.baseVal;
    const view = vb && vb.width ? vb
      : {x: 0, y: 0, width: svg.width.baseVal.value, height: svg.height.baseVal.value};
    const outside = corners.some((p) => p.x < view.x - 0.5 || p.y < view.y - 0.5
      || p.x > view.x + view.width + 0.5 || p.y > view.y + view.height + 0.5);
    if (outside) cut.push(`SVG text outside its viewBox: "${text.textContent.trim()}"`);
  }
  return cut;
}
"""
