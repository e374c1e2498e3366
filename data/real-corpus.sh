#!/usr/bin/env bash
# real-corpus.sh: builds the real-audio corpus the shipped model is trained and validated on, from
# Debian packages (nothing is installed; the files are copied out of the downloaded .deb archives):
#   music/train  26.0 h, 521 game-soundtrack tracks from 50 packages (orchestral, folk, rock/metal,
#                electronic, chiptune, ambient, piano); includes the 51 v1 train tracks, same names
#   music/val    1.1 h, exactly the 12 v1 tracks (wesnoth + warzone2100), same names and bytes
#   noise/       1.2 h, 294 recorded ambiences/loops >= 3 s from 14 packages (wind, rain, thunder,
#                water, birds, insects, forest, city, traffic, crowds, engines, machinery, workshops);
#                names prefixed by source (megaglest_, lincity_ as in v1; redeclipse_, btanks_, ...)
#   speech/      1.4 h of speech prompts in four languages (for babble), as in v1
#   MANIFEST.tsv first line "# dev-corpus v2", then a TSV header: folder file seconds source
#                package version license added (v1 = file also in the v1 corpus, v2 = new)
#   DROPPED.tsv  every candidate file left out, with the reason; LICENSES.md; licenses/*.copyright
# Never uses the packages of minihash's held-out benchmark (ufoai-*, naev-data, 0ad*, pyo, guitarix*) nor
# cube2-data (it ships 0ad sounds). planetblupi-music-ogg is left out: looped MIDI renders.
# New tracks go to train only. Left out: md5 duplicates, tracks < 30 s, jingles/stingers
# (jingle-like names < 60 s), obvious edits by name (x_fast, x_old, x_remix, x_sd, x_chip, ...
# when x exists in the package), and near-duplicates (first 30 s at 8 kHz, normalised
# cross-correlation >= 0.9 within a 5 s lag). Files are copied as shipped, never re-encoded.
# Usage: data/real-corpus.sh [OUT_DIR]   (default $MINIHASH_DATA or ~/minihash-data)
# Skips an OUT_DIR that already holds v2. A v1 OUT_DIR (MANIFEST.tsv without the marker) is rebuilt
# cleanly: v2 is built in OUT_DIR/.dev-corpus-v2.partial, then music/ noise/ speech/ and the
# manifests are replaced (other files in OUT_DIR are left alone); the v1 files come out identical.
# A failed run leaves OUT_DIR as it was.
# Needs root (apt-get) and the Debian mirror; downloads 5.1 GB (58 packages, one at a time), peaks at
# 2.5 GB of temporary disk, writes 1.6 GB; takes 4-7 minutes on 2 cores (mirror ~110 MB/s).
# Optional: DEV_CORPUS_DEBS=DIR keeps the downloaded .deb files there and reuses them next time.
# The audio is GPL / CC-BY(-SA) / BSD-like: use it to develop and validate, never commit it.
set -euo pipefail
MARK='# dev-corpus v2'
OUT=${1:-${MINIHASH_DATA:-$HOME/minihash-data}}
if [ -f "$OUT/MANIFEST.tsv" ] && [ "$(head -n1 "$OUT/MANIFEST.tsv")" = "$MARK" ]; then
  echo "dev corpus v2 already at $OUT"; exit 0
fi
if [ -f "$OUT/MANIFEST.tsv" ]; then
  echo "older (v1) dev corpus at $OUT: rebuilding it as v2 (v1 files and music/val stay identical)"
fi
mkdir -p "$OUT"; OUT=$(cd "$OUT" && pwd)
STAGE="$OUT/.dev-corpus-v2.partial"
rm -rf "$STAGE"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK" "$STAGE"' EXIT
cd "$WORK"
apt-get update -qq >/dev/null 2>&1 || true
python3 -m venv venv >/dev/null && venv/bin/pip install -q soundfile numpy >/dev/null 2>&1
venv/bin/python - "$WORK" "$STAGE" "$OUT" <<'PY'
import fnmatch, hashlib, os, re, shlex, shutil, subprocess, sys, time, zipfile
from collections import defaultdict
from pathlib import Path
import numpy as np
import soundfile as sf

T0 = time.time()
work, stage, out = map(Path, sys.argv[1:4])
root = work / "root"
root.mkdir()
debdir = Path(os.environ.get("DEV_CORPUS_DEBS") or work / "debs")
keep_debs = bool(os.environ.get("DEV_CORPUS_DEBS"))
debdir.mkdir(parents=True, exist_ok=True)
HELD_OUT = re.compile(r"^(ufoai|naev|0ad|pyo|python3-pyo|guitarix|cube2)")  # cube2-data ships 0ad sounds

# ---- v1 content: same packages, same selection code, same names --------------------------------
V1 = {
    "wesnoth-1.16-music": ["usr/share/games/wesnoth/1.16/data/core/music/*"],
    "warzone2100-music": ["usr/share/games/warzone2100/music/*"],
    "megaglest-data": ["usr/share/games/megaglest/tilesets/*/sounds/*",
                       "usr/share/games/megaglest/data/core/menu/music/*",
                       "usr/share/games/megaglest/techs/*/factions/*/music/*"],
    "lincity-ng-data": ["usr/share/games/lincity-ng/sounds/*", "usr/share/games/lincity-ng/music/*"],
    **{f"asterisk-core-sounds-{l}-wav": ["usr/share/asterisk/sounds/*"] for l in ("en", "fr", "it", "ru")},
}
V1_LICENSE = {"wesnoth-1.16-music": "GPL-2+", "warzone2100-music": "CC-BY-SA-3.0 or GPL-2+",
              "megaglest-data": "CC-BY-SA-3.0", "lincity-ng-data": "GPL-2+"}
V1_VAL = {"warzone2100_track12.opus", "warzone2100_track20.opus", "warzone2100_track25.opus",
          "warzone2100_track4.opus", "warzone2100_track9.opus", "wesnoth_battle-epic.ogg",
          "wesnoth_frantic.ogg", "wesnoth_knolls.ogg", "wesnoth_northern_mountains.ogg",
          "wesnoth_sad.ogg", "wesnoth_the_dangerous_symphony.ogg", "wesnoth_underground.ogg"}

# ---- v2 additions --------------------------------------------------------------------------------
# (package, source prefix, folder, files under / ("archive.pk3:member-glob" reads a zip),
#  license unless the package's DEP-5 copyright names the file, options)
# options: skip=regex on the path (left out silently: not music / not an ambience), name="parent"
M, N = "music", "noise"
G = "usr/share/games/"
SPECS = [
    ("widelands-data", "widelands", M, [G + "widelands/data/music/*.ogg"], "GPL-2+", {}),
    ("hedgewars-data", "hedgewars", M, [G + "hedgewars/Data/Music/*.ogg"], "GPL-2", {}),
    ("supertux-data", "supertux", M, [G + "supertux2/music/*/*.ogg"], "GPL-2+", {}),
    ("supertuxkart-data", "supertuxkart", M, [G + "supertuxkart/data/music/*.ogg"], "GPL-3+", {}),
    ("freedroidrpg-data", "freedroidrpg", M, ["usr/share/freedroidrpg/data/sound/music/*.ogg"], "GPL-2+", {}),
    ("flare-game", "flare", M, [G + "flare/mods/*/music/*.ogg"], "CC-BY-SA-3.0+", {"skip": r"_ambient\."}),
    ("openclonk-data", "openclonk", M, [G + "openclonk/Music.ocg/*.ogg"], "CC-BY-3.0 (OpenClonk content)", {}),
    ("colobot-common-sounds", "colobot", M, [G + "colobot/music/*.ogg"], "GPL-3+", {}),
    ("singularity-music", "singularity", M, [G + "singularity/music/*.ogg", G + "singularity/music/*/*.ogg"], "CC-BY-SA-3.0", {}),
    ("marsshooter-data", "marsshooter", M, [G + "marsshooter/audio/music/*.ogg"], "CC-BY-SA-3.0", {}),
    ("marsshooter-data", "marsshooter", M, [G + "marsshooter/audio/menu.ogg", G + "marsshooter/audio/tutorial.ogg"], "CC-BY-3.0", {}),
    ("hyperrogue-music", "hyperrogue", M, ["usr/share/hyperrogue/music/*.ogg"], "GPL-2+", {}),
    ("drascula-music", "drascula", M, ["usr/share/scummvm/drascula/audio/*.ogg"], "Drascula-License (BSD-like)", {}),
    ("warmux-data", "warmux", M, [G + "warmux/music/*/*.ogg"], "GPL-2+", {}),
    ("trackballs-data", "trackballs", M, [G + "trackballs/music/*.ogg"], "GPL-2+", {}),
    ("fillets-ng-data", "fillets", M, [G + "fillets-ng/music/*.ogg"], "GPL-2", {}),
    ("nexuiz-music", "nexuiz", M, [G + "nexuiz/data/music.pk3:sound/cdtracks/*.ogg"], "GPL-2+", {"skip": r"/thunder\.ogg$"}),
    ("berusky2-data", "berusky2", M, [G + "berusky2/music/*.ogg"], "GPL-2+", {}),
    ("fretsonfire-songs-muldjord", "fretsonfire", M, [G + "fretsonfire/data/songs/*/*/song.ogg"], "CC-BY-SA-3.0", {"name": "parent"}),
    ("fretsonfire-songs-sectoid", "fretsonfire", M, [G + "fretsonfire/data/songs/*/*/song.ogg"], "Expat", {"name": "parent"}),
    ("zaz-data", "zaz", M, [G + "zaz/mus*.ogg"], "CC-BY-SA-3.0", {}),
    ("asc-music", "asc", M, [G + "asc/music/*.mp3"], "GPL-2+", {}),
    ("lordsawar-data", "lordsawar", M, [G + "lordsawar/music/*.ogg"], "GPL-3+", {}),
    ("adonthell-data", "adonthell", M, [G + "adonthell/games/wastesedge/audio/*.ogg"], "GPL-2+", {}),
    ("btanks-data", "btanks", M, [G + "btanks/data/tunes/*.ogg"], "GPL-2+ with Battle Tanks exception", {}),
    ("frozen-bubble-data", "frozenbubble", M, [G + "frozen-bubble/snd/*zik*.ogg"], "GPL-2", {}),
    ("pushover-data", "pushover", M, ["usr/share/pushover/themes/*.ogg"], "GPL-3+", {}),
    ("pathological", "pathological", M, [G + "pathological/music/*.ogg"], "GPL-2+", {}),
    ("megaglest-data", "megaglest", M, [G + "megaglest/data/core/menu/music/*.ogg", G + "megaglest/techs/*/factions/*/music/*.ogg"], "CC-BY-SA-3.0", {}),
    ("lincity-ng-data", "lincity", M, [G + "lincity-ng/music/*/*.ogg"], "GPL-2+", {}),
    ("neverball-common", "neverball", M, [G + "neverball/bgm/*.ogg"], "GPL-2+", {}),
    ("extremetuxracer-data", "etr", M, [G + "etr/music/*.ogg"], "GPL-2+", {}),
    ("wordwarvi-sound", "wordwarvi", M, ["usr/share/wordwarvi/sounds/*mix*.ogg", "usr/share/wordwarvi/sounds/*stuffing*.ogg",
                                           "usr/share/wordwarvi/sounds/destiny_facedown.ogg", "usr/share/wordwarvi/sounds/highscoremusic.ogg"], "CC-BY-SA-3.0", {}),
    ("redeclipse-data", "redeclipse", M, [G + "redeclipse/data/sounds/music/*.ogg", G + "redeclipse/data/sounds/theme*.ogg",
                                          G + "redeclipse/data/sounds/original.ogg"], "CC-BY-SA-3.0+", {}),
    ("supertuxkart-data", "supertuxkart", M, [G + "supertuxkart/data/tracks/*/*.ogg"], "GPL-3+",
     {"only": r"/(Battle_Theme_1|Gran_Paradiso_Unused[^/]*|intro2|beneath_the_rabbit_hole)\.ogg$"}),
    ("openarena-088-data", "openarena", M, [G + "openarena/baseoa/pak6-patch088.pk3:music/*.ogg"], "GPL-2+", {}),
    ("freeorion-data", "freeorion", M, [G + "freeorion/default/data/sound/artificial_intelligence*.ogg"], "CC-BY-SA-3.0", {}),
    ("powermanga-data", "powermanga", M, [G + "powermanga/sound/*/music_*.ogg"], "GPL-3+", {}),
    ("gigalomania-data", "gigalomania", M, ["usr/share/gigalomania/music/*.ogg"], "GPL-2+", {}),
    ("pax-britannica-data", "paxbritannica", M, ["usr/share/pax-britannica/audio/music.ogg"], "Expat", {}),
    ("tuxmath-data", "tuxmath", M, ["usr/share/tuxmath/sounds/0*.ogg", "usr/share/tuxmath/sounds/tuxi.ogg"], "GPL-3+", {}),
    # Kenta Cho's shooters: short electronic pieces
    ("noiz2sa-data", "noiz2sa", M, [G + "noiz2sa/sounds/stg*.ogg"], "BSD-2-Clause", {}),
    ("a7xpg-data", "a7xpg", M, [G + "a7xpg/sounds/bgm*.ogg"], "BSD-2-Clause", {}),
    ("gunroar-data", "gunroar", M, [G + "gunroar/sounds/musics/*.ogg"], "BSD-2-Clause", {}),
    ("mu-cade-data", "mucade", M, [G + "mu-cade/sounds/musics/*.ogg"], "BSD-2-Clause", {}),
    ("parsec47-data", "parsec47", M, [G + "parsec47/sounds/ptn*.ogg"], "BSD-2-Clause", {}),
    ("rrootage-data", "rrootage", M, [G + "rrootage/sounds/stg_*.ogg"], "BSD-2-Clause", {}),
    ("titanion-data", "titanion", M, [G + "titanion/sounds/musics/*.ogg"], "BSD-2-Clause", {}),
    ("torus-trooper-data", "torustrooper", M, [G + "torus-trooper/sounds/musics/*.ogg"], "BSD-2-Clause", {}),
    ("tumiki-fighters-data", "tumikifighters", M, [G + "tumiki-fighters/sounds/*.ogg"], "BSD-2-Clause", {}),
    # noise: recorded ambiences and loops (>= 3 s)
    ("redeclipse-data", "redeclipse", N, [G + "redeclipse/data/sounds/ambience/*.ogg", G + "redeclipse/data/sounds/ambience/*/*.ogg"], "CC-BY-SA-3.0+", {}),
    ("btanks-data", "btanks", N, [G + "btanks/data/sounds/ambient/*.ogg"], "GPL-2+ with Battle Tanks exception", {}),
    ("flare-game", "flare", N, [G + "flare/mods/*/soundfx/environment/*.ogg", G + "flare/mods/*/music/*_ambient.ogg"], "CC-BY-SA-3.0+", {}),
    ("supertuxkart-data", "supertuxkart", N, [G + "supertuxkart/data/sfx/*.ogg", G + "supertuxkart/data/tracks/*/*.ogg"], "GPL-3+",
     {"only": r"(river|waterfall|birds|restaurant|airport|static-radio|spaceship|jetEngine|fireworks|/sheep|steamLocomotive)[^/]*$"}),
    ("supertux-data", "supertux", N, [G + "supertux2/sounds/rain.wav", G + "supertux2/sounds/lava.wav"], "GPL-3+", {}),
    ("lugaru-data", "lugaru", N, [G + "lugaru/Sounds/DesertAmbient.ogg", G + "lugaru/Sounds/Wind.ogg"], "CC-BY-SA-3.0", {}),
    ("endless-sky-data", "endlesssky", N, [G + "endless-sky/sounds/ambient/*"], "public-domain (freesound.org)", {}),
    ("scorched3d-data", "scorched3d", N, [G + "scorched3d/data/globalmods/*/data/wav/misc/*.wav"], "GPL-2+",
     {"only": r"/(birds|frogs|oceanwaves|rain|lava2|jet|cheeringloop|citysounds|factoryloop|helicopter|cessna|f16_|f18_|policecar)[^/]*$"}),
    ("widelands-data", "widelands", N, [G + "widelands/data/sound/*/*.ogg", G + "widelands/data/sound/*/*/*.ogg"], "GPL-2+",
     {"only": r"/(animals|saw|mill|smiths|taverns|metal|cutting)/[^/]+$", "min_s": 5.0}),
    ("berusky2-data", "berusky2", N, [G + "berusky2/sound/sound/*.wav"], "GPL-2+",
     {"only": r"/(Vitr|Voda|les|mesto|village|swamp|racek|parnik|Ptak|Auto|Bubl)[^/]*$"}),
    ("7kaa-data", "7kaa", N, [G + "7kaa/SOUND/RAIN.WAV", G + "7kaa/SOUND/WIND.WAV", G + "7kaa/SOUND/FIRE.WAV", G + "7kaa/SOUND/THUNDER.WAV"], "GPL-2+", {}),
    ("nexuiz-music", "nexuiz", N, [G + "nexuiz/data/music.pk3:sound/cdtracks/thunder.ogg"], "GPL-2+", {}),
]
for s in SPECS:
    assert not HELD_OUT.match(s[0]), s[0]

# ---- download (apt-get download) and extract only the needed paths (dpkg-deb | tar) ------------
tar_pats = defaultdict(list)
for pkg, pats in V1.items():
    tar_pats[pkg] += pats
for pkg, _src, _kind, globs, _lic, _opt in SPECS:
    tar_pats[pkg] += [g.split(":")[0] for g in globs]
owner, version, missing = {}, {}, []


def fetch(pkg):
    if not list(debdir.glob(f"{pkg}_*.deb")):
        subprocess.run(["apt-get", "download", pkg], cwd=debdir, capture_output=True)
    debs = sorted(debdir.glob(f"{pkg}_*.deb"))
    return debs[-1] if debs else None


def start_extract(pkg, deb):
    pats = ["./" + p for p in dict.fromkeys(tar_pats[pkg])] + [f"./usr/share/doc/{pkg}/copyright"]
    cmd = f"dpkg-deb --fsys-tarfile {shlex.quote(str(deb))} | tar -xv -C {shlex.quote(str(root))} --wildcards " \
          + " ".join(map(shlex.quote, pats))
    return pkg, deb, subprocess.Popen(["bash", "-c", cmd], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)


def finish(job):
    pkg, deb, proc = job
    names = proc.stdout.read().split("\n")
    proc.wait()
    for n in names:
        if n and not n.endswith("/"):
            owner[n[2:] if n.startswith("./") else n] = pkg
    version[pkg] = subprocess.run(["dpkg-deb", "-f", str(deb), "Version"], capture_output=True, text=True).stdout.strip()
    if not keep_debs:
        deb.unlink()


job = None
for pkg in tar_pats:
    deb = fetch(pkg)
    if job:
        finish(job)
        job = None
    if deb is None:
        if pkg in V1:
            sys.exit(f"cannot download {pkg} (needed for the v1 part)")
        print(f"WARNING: cannot download {pkg}: its files are left out", file=sys.stderr)
        missing.append(pkg)
        continue
    job = start_extract(pkg, deb)
if job:
    finish(job)
T_FETCH = time.time() - T0

# ---- v1 selection (code as in v1; it also logs what it leaves out) -------------------------------
DERIVED = {"frantic-old.ogg", "track3_enhanced.opus", "silence.ogg"}
dropped = []  # (package, path in package, seconds, reason, detail)


def rel(p):
    return str(p.relative_to(root))


def pkg_of(p):
    r = rel(p).split(":")[0]
    return owner.get(r, "?")


def duration(p):
    try:
        i = sf.info(str(p)); return i.frames / i.samplerate
    except Exception:
        return 0.0


def unique(paths, min_s):
    seen, keep = set(), []
    for p in sorted(paths):
        if p.is_symlink() or p.name in DERIVED:
            if p.name in DERIVED:
                dropped.append((pkg_of(p), rel(p), "", "variant-name", "v1 list of derived tracks"))
            continue
        h = hashlib.md5(p.read_bytes()).hexdigest()
        d = duration(p)
        if h in seen or d < min_s:
            dropped.append((pkg_of(p), rel(p), f"{d:.1f}", "md5-duplicate" if h in seen else f"under-{min_s:g}s", "v1 rule"))
            continue
        seen.add(h); keep.append((p, d))
    return keep


def lic_v1(pkg):
    return V1_LICENSE.get(pkg, "CC-BY-SA-3.0")


rows, moves, md5s = [], [], {}


def take(p, dst, folder, d, src, lic, added):
    pkg = pkg_of(p)
    rows.append((folder, dst.name, f"{d:.1f}", src, pkg, version.get(pkg, "?"), lic, added))
    moves.append((p, dst))
    md5s[hashlib.md5(p.read_bytes()).hexdigest()] = f"{folder}/{dst.name}"


music = [p for p in (root / "usr/share/games/wesnoth/1.16/data/core/music").glob("*.ogg")]
music += list((root / "usr/share/games/warzone2100/music").rglob("*.opus"))
v1_music = []
for i, (p, d) in enumerate(unique(music, 30.0)):
    split = "val" if i % 5 == 4 else "train"
    src = "wesnoth" if "wesnoth" in str(p) else "warzone2100"
    dst = stage / "music" / split / f"{src}_{p.stem}{p.suffix}"
    take(p, dst, f"music/{split}", d, src, lic_v1(pkg_of(p)), "v1")
    v1_music.append((p, dst))
val_names = {r[1] for r in rows if r[0] == "music/val"}
if val_names != V1_VAL:
    sys.exit(f"music/val differs from v1: {sorted(val_names ^ V1_VAL)} (package content changed?)")
noise = list((root / "usr/share/games/megaglest/tilesets").rglob("sounds/*"))
noise = [p for p in noise if p.suffix in (".ogg", ".wav")]
for p, d in unique(noise, 8.0):
    take(p, stage / "noise" / f"megaglest_{p.parent.parent.name}_{p.name}", "noise", d, "megaglest", lic_v1("megaglest-data"), "v1")
for p, d in unique((root / "usr/share/games/lincity-ng/sounds").glob("*.wav"), 3.0):
    take(p, stage / "noise" / f"lincity_{p.name}", "noise", d, "lincity-ng", lic_v1("lincity-ng-data"), "v1")
for p, d in unique((root / "usr/share/asterisk/sounds").rglob("*.wav"), 1.5):
    voice = p.relative_to(root / "usr/share/asterisk/sounds").parts[0]
    take(p, stage / "speech" / voice / p.name, f"speech/{voice}", d, "asterisk-core-sounds", lic_v1(pkg_of(p)), "v1")
names_used = {(r[0].split("/")[0], r[1]) for r in rows}

# ---- per-file licenses from DEP-5 copyright files ------------------------------------------------
dep5 = {}


def dep5_stanzas(pkg):
    if pkg not in dep5:
        f = root / f"usr/share/doc/{pkg}/copyright"
        st = []
        if f.is_file():
            for para in re.split(r"\n\s*\n", f.read_text(errors="replace")):
                m = re.search(r"^Files:(.*(?:\n[ \t].*)*)", para, re.M)
                l = re.search(r"^License:[ \t]*(.+)", para, re.M)
                if m and l:
                    st.append((m.group(1).split(), l.group(1).strip()))
        dep5[pkg] = st
    return dep5[pkg]


def license_for(pkg, path, default):
    lic = default
    for pats, l in dep5_stanzas(pkg):
        for pat in pats:
            if pat in ("*", "debian/*"):
                continue
            if fnmatch.fnmatch("/" + path, "*/" + pat) or (
                    not re.search(r"[*?\[]", pat.rsplit("/", 1)[-1]) and path.rsplit("/", 1)[-1] == pat.rsplit("/", 1)[-1]):
                lic = l
    return lic


# ---- v2 candidates -------------------------------------------------------------------------------
def safe(s):
    return re.sub(r"[^A-Za-z0-9._-]+", "_", s).strip("_")


def expand(spec):
    pkg, src, kind, globs, lic, opt = spec
    found = []
    for g in globs:
        if ":" in g:  # member of a zip/pk3 archive, written out unchanged
            arc, member = g.split(":", 1)
            a = root / arc
            if not a.is_file():
                continue
            with zipfile.ZipFile(a) as z:
                for m in z.namelist():
                    if fnmatch.fnmatch(m, member):
                        dst = root / (arc + ":") / m
                        dst.parent.mkdir(parents=True, exist_ok=True)
                        dst.write_bytes(z.read(m))
                        owner[arc + ":/" + m] = pkg
                        found.append(dst)
        else:
            found += [p for p in root.glob(g) if p.is_file() and not p.is_symlink() and owner.get(rel(p)) == pkg]
    if "only" in opt:
        found = [p for p in found if re.search(opt["only"], "/" + rel(p))]
    if "skip" in opt:
        found = [p for p in found if not re.search(opt["skip"], "/" + rel(p))]
    return sorted(set(found))


VARIANT = re.compile(r"^(?P<base>.+?)[_-](fast|f|old|enhanced|remix|revisited|sd|chip|loop\d*|short|alt|edit)$", re.I)
JINGLE = re.compile(r"(jingle|sting|fanfare|victory|defeat|gameover|game_over|tada|highscore|summary|"
                    r"(^|[^a-z])(win|lose|lost)([^a-z]|$))", re.I)
cands = []  # dicts for the music near-duplicate check
new_noise = []
for spec in SPECS:
    pkg, src, kind, globs, deflic, opt = spec
    if pkg in missing:
        continue
    files = expand(spec)
    stems = [p.stem.lower() for p in files]
    for p in files:
        r = rel(p).replace(":/", ":")
        try:
            i = sf.info(str(p)); d = i.frames / i.samplerate
        except Exception as e:
            dropped.append((pkg, r, "", "unreadable", str(e).split("\n")[0][:80])); continue
        h = hashlib.md5(p.read_bytes()).hexdigest()
        if h in md5s:
            dropped.append((pkg, r, f"{d:.1f}", "md5-duplicate", md5s[h])); continue
        lic = license_for(pkg, r, deflic)
        stem = p.parent.name if opt.get("name") == "parent" else p.stem
        name = safe(f"{src}_{stem}") + p.suffix
        if (kind, name) in names_used:
            name = safe(f"{src}_{p.parent.name}_{stem}") + p.suffix
        if kind == N:
            if d < opt.get("min_s", 3.0):
                dropped.append((pkg, r, f"{d:.1f}", f"under-{opt.get('min_s', 3.0):g}s", "noise")); continue
            md5s[h] = f"noise/{name}"; names_used.add((kind, name))
            new_noise.append((p, stage / "noise" / name, d, src, lic))
            continue
        if d < 30.0:
            dropped.append((pkg, r, f"{d:.1f}", "under-30s", "")); continue
        if JINGLE.search(p.stem) or JINGLE.search(p.parent.name):
            if d < 60.0:
                dropped.append((pkg, r, f"{d:.1f}", "jingle", "")); continue
        m = VARIANT.match(p.stem)
        if m:
            base = m.group("base").lower().rstrip("_-")
            other = [s for s in stems if s != p.stem.lower() and s.startswith(base)]
            if other:
                dropped.append((pkg, r, f"{d:.1f}", "variant-name", f"edit of {other[0]}")); continue
        md5s[h] = f"music/train/{name}"; names_used.add((kind, name))
        cands.append({"p": p, "dst": stage / "music" / "train" / name, "d": d, "src": src, "lic": lic, "pkg": pkg, "r": r})

# ---- near-duplicates: first 30 s at 8 kHz, onset-envelope screening, then waveform NCC >= 0.9 ----
SR8, HOP, CLIP, MAXLAG = 8000, 160, 30, 5


def clip8k(p):
    i = sf.info(str(p))
    x = sf.read(str(p), frames=min(i.frames, CLIP * i.samplerate), dtype="float32", always_2d=True)[0].mean(axis=1)
    if i.samplerate != SR8:
        m = int(round(len(x) * SR8 / i.samplerate))
        x = np.fft.irfft(np.fft.rfft(x)[: m // 2 + 1], n=m) * (m / len(x))
    return x.astype(np.float32)


def onset_env(x):
    t = len(x) // HOP
    s = np.abs(np.fft.rfft(x[: t * HOP].reshape(t, HOP) * np.hanning(HOP), axis=1))
    e = np.maximum(np.diff(np.log1p(100 * s), axis=0), 0).sum(axis=1)
    e = np.pad(e - e.mean(), (0, CLIP * SR8 // HOP - len(e)))
    return e / (np.linalg.norm(e) + 1e-9)


def ncc(a, b):
    a, b = a.astype(np.float64), b.astype(np.float64)
    n = 1 << (len(a) + len(b)).bit_length()
    c = np.fft.irfft(np.fft.rfft(a, n) * np.conj(np.fft.rfft(b, n)), n)
    c = np.concatenate([c[-MAXLAG * SR8:], c[: MAXLAG * SR8 + 1]])
    return float(c.max() / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-9))


T1 = time.time()
items = [{"p": p, "v1": True, "name": dst.name} for p, dst in v1_music] + [dict(c, v1=False, name=c["dst"].name) for c in cands]
waves, envs, ok = [], [], []
for it in items:
    try:
        x = clip8k(it["p"])
    except Exception as e:
        x = None
    if x is None or np.abs(x).max() < 1e-4:
        continue
    ok.append(it); waves.append(x.astype(np.float16)); envs.append(onset_env(x))
nfft, L = 4096, MAXLAG * SR8 // HOP
F = np.fft.rfft(np.stack(envs), nfft, axis=1)
pairs = []
for i in range(len(ok) - 1):
    r = np.fft.irfft(F[i][None, :] * np.conj(F[i + 1:]), nfft, axis=1)
    r = np.concatenate([r[:, -L:], r[:, : L + 1]], axis=1).max(axis=1)
    for j in np.nonzero(r >= 0.6)[0]:
        pairs.append((i, i + 1 + int(j)))
gone, v1_pairs = set(), []
for i, j in sorted(pairs, key=lambda ij: (ij[1], ij[0])):
    if i in gone or j in gone:
        continue
    c = ncc(waves[i], waves[j])
    if c < 0.9:
        continue
    if ok[j]["v1"]:  # both v1 (v1 files stay as they were): only reported
        v1_pairs.append((ok[i]["name"], ok[j]["name"], c)); continue
    gone.add(j)
    dropped.append((ok[j]["pkg"], ok[j]["r"], f"{ok[j]['d']:.1f}", "near-duplicate", f"ncc {c:.2f} with {ok[i]['name']}"))
del waves
T_ND = time.time() - T1
gone_p = {ok[j]["p"] for j in gone}
for c in cands:
    if c["p"] not in gone_p:
        rows.append(("music/train", c["dst"].name, f"{c['d']:.1f}", c["src"], c["pkg"], version[c["pkg"]], c["lic"], "v2"))
        moves.append((c["p"], c["dst"]))
for p, dst, d, src, lic in new_noise:
    pkg = pkg_of(p)
    rows.append(("noise", dst.name, f"{d:.1f}", src, pkg, version[pkg], lic, "v2"))
    moves.append((p, dst))

# ---- write the staged corpus ---------------------------------------------------------------------
for p, dst in moves:
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(p), dst)
(stage / "licenses").mkdir(parents=True)
used = defaultdict(lambda: defaultdict(int))
for r in rows:
    used[r[4]][r[0].split("/")[0]] += 1
for pkg in used:
    f = root / f"usr/share/doc/{pkg}/copyright"
    if f.is_file():
        shutil.copy(f, stage / "licenses" / f"{pkg}.copyright")
with open(stage / "DROPPED.tsv", "w") as f:
    f.write("package\tpath_in_package\tseconds\treason\tdetail\n")
    f.writelines("\t".join(r) + "\n" for r in dropped)
lics = defaultdict(set)
for r in rows:
    lics[r[4]].add(r[6])
with open(stage / "LICENSES.md", "w") as f:
    f.write("# Sources and licenses of the development corpus (dev-corpus v2)\n"
            "Built by minihash's data/real-corpus.sh from Debian bookworm packages. MANIFEST.tsv gives each file's\n"
            "package, version and license; licenses/PACKAGE.copyright is the package's Debian copyright file\n"
            "(authors, attribution, full license texts).\n\n| package | version | files | licenses |\n|---|---|---|---|\n")
    for pkg in sorted(used):
        n = ", ".join(f"{v} {k}" for k, v in sorted(used[pkg].items()))
        f.write(f"| {pkg} | {version.get(pkg, '?')} | {n} | {'; '.join(sorted(lics[pkg]))} |\n")
    f.write("\nDevelopment and validation only; do not commit these files to the project.\n")
with open(stage / "MANIFEST.tsv", "w") as f:
    f.write("# dev-corpus v2\n")
    f.write("folder\tfile\tseconds\tsource\tpackage\tversion\tlicense\tadded\n")
    f.writelines("\t".join(r) + "\n" for r in rows)

# ---- report --------------------------------------------------------------------------------------
def hours(sel):
    return sum(float(r[2]) for r in sel) / 3600


for folder in ("music/train", "music/val", "noise", "speech"):
    sel = [r for r in rows if r[0].startswith(folder)]
    print(f"{folder:12s} {len(sel):5d} files {hours(sel):6.2f} h")
print("music/train by source:", ", ".join(
    f"{s} {sum(1 for r in rows if r[0] == 'music/train' and r[3] == s)}"
    for s in dict.fromkeys(r[3] for r in rows if r[0] == "music/train")))
print("noise by source (min):", ", ".join(
    f"{s} {hours([r for r in rows if r[0] == 'noise' and r[3] == s]) * 60:.1f}"
    for s in dict.fromkeys(r[3] for r in rows if r[0] == "noise")))
cnt = defaultdict(int)
for d in dropped:
    cnt[d[3]] += 1
print("dropped (see DROPPED.tsv):", ", ".join(f"{k} {v}" for k, v in sorted(cnt.items())))
for a, b, c in v1_pairs:
    print(f"note: v1 tracks {a} and {b} are near-duplicates (ncc {c:.2f}); kept as in v1")
if missing:
    print("packages not available:", " ".join(missing))
print(f"time: download+extract {T_FETCH:.0f} s, near-duplicate check {T_ND:.0f} s ({len(pairs)} screened pairs), "
      f"total {time.time() - T0:.0f} s")
PY
rm -f "$OUT/MANIFEST.tsv"
for d in music noise speech licenses LICENSES.md DROPPED.tsv; do rm -rf "${OUT:?}/$d"; done
for d in music noise speech licenses LICENSES.md DROPPED.tsv; do mv "$STAGE/$d" "$OUT/"; done
mv "$STAGE/MANIFEST.tsv" "$OUT/MANIFEST.tsv"
rmdir "$STAGE"
echo "dev corpus v2 ready at $OUT"
