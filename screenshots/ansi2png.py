"""Render a `tmux capture-pane -e -p` dump (text with SGR colour codes) to a PNG.

Used to make README screenshots of the real binary running under tmux:
    tmux capture-pane -e -p -t SESSION > shot.ansi
    python3 screenshots/ansi2png.py shot.ansi screenshots/dashboard.png
Needs Pillow and a monospace TTF (fonts-dejavu-core); not part of the test suite.
"""

import re
import sys

from PIL import Image, ImageDraw, ImageFont

PALETTE = [
    (30, 30, 30), (205, 49, 49), (13, 188, 121), (229, 229, 16),
    (36, 114, 200), (188, 63, 188), (17, 168, 205), (229, 229, 229),
    (102, 102, 102), (241, 76, 76), (35, 209, 139), (245, 245, 67),
    (59, 142, 234), (214, 112, 214), (41, 184, 219), (255, 255, 255),
]
FG, BG = (220, 220, 220), (24, 24, 24)
SGR = re.compile(r"\x1b\[([0-9;]*)m")


def color256(n):
    if n < 16:
        return PALETTE[n]
    if n < 232:
        n -= 16
        steps = [0, 95, 135, 175, 215, 255]
        return (steps[n // 36], steps[(n // 6) % 6], steps[n % 6])
    v = 8 + (n - 232) * 10
    return (v, v, v)


def apply(codes, st):
    nums = [int(c) if c else 0 for c in codes.split(";")] if codes else [0]
    i = 0
    while i < len(nums):
        c = nums[i]
        if c == 0:
            st.update(fg=FG, bg=BG, bold=False, rev=False)
        elif c == 1:
            st["bold"] = True
        elif c == 7:
            st["rev"] = True
        elif c == 22:
            st["bold"] = False
        elif c == 27:
            st["rev"] = False
        elif 30 <= c <= 37:
            st["fg"] = PALETTE[c - 30]
        elif 90 <= c <= 97:
            st["fg"] = PALETTE[c - 90 + 8]
        elif 40 <= c <= 47:
            st["bg"] = PALETTE[c - 40]
        elif c == 39:
            st["fg"] = FG
        elif c == 49:
            st["bg"] = BG
        elif c in (38, 48) and i + 2 < len(nums) and nums[i + 1] == 5:
            st["fg" if c == 38 else "bg"] = color256(nums[i + 2])
            i += 2
        elif c in (38, 48) and i + 4 < len(nums) and nums[i + 1] == 2:
            st["fg" if c == 38 else "bg"] = tuple(nums[i + 2:i + 5])
            i += 4
        i += 1


def main(src, dst):
    lines = open(src, encoding="utf-8", errors="replace").read().splitlines()
    font = ImageFont.truetype("/usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf", 15)
    bold = ImageFont.truetype("/usr/share/fonts/truetype/dejavu/DejaVuSansMono-Bold.ttf", 15)
    cw = int(font.getlength("M"))
    ch = 19
    cols = max(len(SGR.sub("", l)) for l in lines)
    img = Image.new("RGB", (cols * cw + 16, len(lines) * ch + 16), BG)
    draw = ImageDraw.Draw(img)
    st = {"fg": FG, "bg": BG, "bold": False, "rev": False}
    for row, line in enumerate(lines):
        col = 0
        for part in re.split(r"(\x1b\[[0-9;]*m)", line):
            m = SGR.fullmatch(part)
            if m:
                apply(m.group(1), st)
                continue
            for chr_ in part:
                fg, bg = (st["bg"], st["fg"]) if st["rev"] else (st["fg"], st["bg"])
                x, y = 8 + col * cw, 8 + row * ch
                draw.rectangle([x, y, x + cw, y + ch], fill=bg)
                draw.text((x, y), chr_, font=bold if st["bold"] else font, fill=fg)
                col += 1
    img.save(dst)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
