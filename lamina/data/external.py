"""Dataset URLs and ``untar_data``: download, check and extract a dataset once, then reuse it.

Layout (``LAMINA_HOME`` defaults to ``~/.lamina``; see ``lamina.config``)::

    $LAMINA_HOME/archive/oxford-iiit-pet.tgz      # the downloaded archive
    $LAMINA_HOME/data/oxford-iiit-pet/            # what untar_data returns

Mirrors: when ``LAMINA_DATA_URL`` is set, every dataset URL under fast.ai's S3 buckets
(``URLs.S3``, i.e. ``https://s3.amazonaws.com/fast-ai-<bucket>/``), under
``https://files.grouplens.org/datasets/`` or under Google's ``ml-animal-sounds-datasets/`` is fetched as
``<LAMINA_DATA_URL>/<file name>`` instead: ``URLs.PETS`` becomes ``$LAMINA_DATA_URL/oxford-iiit-pet.tgz``.
The mirror is therefore one flat folder of archives. Other URLs (your own, ``file://``) are fetched as
given. The file names on disk and the known sizes/checksums are those of the original URL.

Safety: downloads go to ``<file>.part`` and are renamed only when complete and checked (an interrupted
download resumes with an HTTP range request); archives are extracted into a temporary folder beside the
target and renamed into place in one step, members that would land outside it or expand it past a ceiling
are refused. Processes asking for the same file take turns; the others reuse the first one's result.
"""

from __future__ import annotations

import hashlib
import os
import re
from contextlib import nullcontext
from pathlib import Path
from urllib.parse import urlsplit

from lamina.config import data_url_base, lamina_path
from lamina.data.archives import DownloadError, archive_problem, disk_errors, extract_archive, extract_locked
from lamina.data.fetch import CHUNK, DEFAULT_TIMEOUT, copy_local, fetch
from lamina.data.locks import file_lock

__all__ = ["URLs", "untar_data", "download_url", "extract_archive", "resolve_url", "DownloadError"]

_ASSETS = Path(__file__).resolve().parent.parent / "assets"


class URLs:
    """Where the standard datasets and pretrained files live (fast.ai's public buckets).

    Example:
        >>> path = untar_data(URLs.PETS) / "images"
        >>> URLs.path(URLs.PETS)  # where the archive is (or would be) stored
    """

    LOCAL_PATH = Path.cwd()
    MDL = "http://files.fast.ai/models/"
    GOOGLE = "https://storage.googleapis.com/"
    S3 = "https://s3.amazonaws.com/fast-ai-"
    URL = f"{S3}sample/"
    S3_IMAGE = f"{S3}imageclas/"
    S3_IMAGELOC = f"{S3}imagelocal/"
    S3_AUDI = f"{S3}audio/"
    S3_NLP = f"{S3}nlp/"
    S3_COCO = f"{S3}coco/"
    S3_MODEL = f"{S3}modelzoo/"

    # Small samples, and the main datasets of the course and the book
    ADULT_SAMPLE = f"{URL}adult_sample.tgz"
    BIWI_SAMPLE = f"{URL}biwi_sample.tgz"
    CIFAR = f"{URL}cifar10.tgz"
    COCO_SAMPLE = f"{S3_COCO}coco_sample.tgz"
    COCO_TINY = f"{S3_COCO}coco_tiny.tgz"
    HUMAN_NUMBERS = f"{URL}human_numbers.tgz"
    IMDB = f"{S3_NLP}imdb.tgz"
    IMDB_SAMPLE = f"{URL}imdb_sample.tgz"
    ML_SAMPLE = f"{URL}movie_lens_sample.tgz"
    ML_100k = "https://files.grouplens.org/datasets/movielens/ml-100k.zip"
    MNIST_SAMPLE = f"{URL}mnist_sample.tgz"
    MNIST_TINY = f"{URL}mnist_tiny.tgz"
    MNIST_VAR_SIZE_TINY = f"{S3_IMAGE}mnist_var_size_tiny.tgz"
    PLANET_SAMPLE = f"{URL}planet_sample.tgz"
    PLANET_TINY = f"{URL}planet_tiny.tgz"
    IMAGENETTE = f"{S3_IMAGE}imagenette2.tgz"
    IMAGENETTE_160 = f"{S3_IMAGE}imagenette2-160.tgz"
    IMAGENETTE_320 = f"{S3_IMAGE}imagenette2-320.tgz"
    IMAGEWOOF = f"{S3_IMAGE}imagewoof2.tgz"
    IMAGEWOOF_160 = f"{S3_IMAGE}imagewoof2-160.tgz"
    IMAGEWOOF_320 = f"{S3_IMAGE}imagewoof2-320.tgz"
    IMAGEWANG = f"{S3_IMAGE}imagewang.tgz"
    IMAGEWANG_160 = f"{S3_IMAGE}imagewang-160.tgz"
    IMAGEWANG_320 = f"{S3_IMAGE}imagewang-320.tgz"
    DOGS = f"{URL}dogscats.tgz"

    # Image classification
    CALTECH_101 = f"{S3_IMAGE}caltech_101.tgz"
    CARS = f"{S3_IMAGE}stanford-cars.tgz"
    CIFAR_100 = f"{S3_IMAGE}cifar100.tgz"
    CUB_200_2011 = f"{S3_IMAGE}CUB_200_2011.tgz"
    FLOWERS = f"{S3_IMAGE}oxford-102-flowers.tgz"
    FOOD = f"{S3_IMAGE}food-101.tgz"
    MNIST = f"{S3_IMAGE}mnist_png.tgz"
    PETS = f"{S3_IMAGE}oxford-iiit-pet.tgz"

    # Text
    AG_NEWS = f"{S3_NLP}ag_news_csv.tgz"
    AMAZON_REVIEWS = f"{S3_NLP}amazon_review_full_csv.tgz"
    AMAZON_REVIEWS_POLARITY = f"{S3_NLP}amazon_review_polarity_csv.tgz"
    DBPEDIA = f"{S3_NLP}dbpedia_csv.tgz"
    MT_ENG_FRA = f"{S3_NLP}giga-fren.tgz"
    SOGOU_NEWS = f"{S3_NLP}sogou_news_csv.tgz"
    WIKITEXT = f"{S3_NLP}wikitext-103.tgz"
    WIKITEXT_TINY = f"{S3_NLP}wikitext-2.tgz"
    YAHOO_ANSWERS = f"{S3_NLP}yahoo_answers_csv.tgz"
    YELP_REVIEWS = f"{S3_NLP}yelp_review_full_csv.tgz"
    YELP_REVIEWS_POLARITY = f"{S3_NLP}yelp_review_polarity_csv.tgz"

    # Localisation, segmentation and detection
    BIWI_HEAD_POSE = f"{S3_IMAGELOC}biwi_head_pose.tgz"
    CAMVID = f"{S3_IMAGELOC}camvid.tgz"
    CAMVID_TINY = f"{URL}camvid_tiny.tgz"
    LSUN_BEDROOMS = f"{S3_IMAGE}bedroom.tgz"
    PASCAL_2007 = f"{S3_IMAGELOC}pascal_2007.tgz"
    PASCAL_2012 = f"{S3_IMAGELOC}pascal_2012.tgz"

    # Audio, medical imaging, pretrained models
    MACAQUES = f"{GOOGLE}ml-animal-sounds-datasets/macaques.zip"
    ZEBRA_FINCH = f"{GOOGLE}ml-animal-sounds-datasets/zebra_finch.zip"
    SIIM_SMALL = f"{S3_IMAGELOC}siim_small.tgz"
    TCGA_SMALL = f"{S3_IMAGELOC}tcga_small.tgz"
    OPENAI_TRANSFORMER = f"{S3_MODEL}transformer.tgz"
    WT103_FWD = f"{S3_MODEL}wt103-fwd.tgz"
    WT103_BWD = f"{S3_MODEL}wt103-bwd.tgz"

    # Bundled with lamina (works offline): 185 Oxford-IIIT Pet images, 5 per breed, shorter side 176 px;
    # extracts to `pets_sample/images/`. CC BY-SA 4.0, see lamina/assets/PETS_SAMPLE_LICENSE.txt.
    PETS_SAMPLE = (_ASSETS / "pets_sample.tgz").as_uri()

    @staticmethod
    def path(url: str = ".", c_key: str = "archive") -> Path:
        """Where the file of ``url`` is stored locally.

        ``./data/<file>`` (``./models/<file>`` for ``c_key='model'``) in the working directory at import
        time wins when it exists; otherwise ``$LAMINA_HOME/<folder for c_key>/<file>``.

        Args:
            url: a dataset or model URL; only its last path segment is used.
            c_key: ``'archive'``, ``'data'`` or ``'model'``.
        """
        name = _file_name(url)
        local = URLs.LOCAL_PATH / ("models" if c_key == "model" else "data") / name
        return local if local.exists() else lamina_path(_folder_name(c_key)) / name


# Known archives: url -> (size in bytes, sha256 or None where only the size is known for sure).
# URLs without an entry are not checked.
_CHECKS: dict[str, tuple[int, str | None]] = {
    URLs.PETS: (811_706_944, None),
    URLs.MNIST_SAMPLE: (3_214_948, None),
    URLs.CAMVID_TINY: (2_314_212, None),
    URLs.ADULT_SAMPLE: (968_212, None),
    URLs.ML_SAMPLE: (51_790, None),
    # Rebuilt by tools/make_pets_sample.py, which prints these two numbers.
    URLs.PETS_SAMPLE: (2_107_881, "d127030ecc6a3cc61915a9c5f4cd3fbb80c65fb2d7fb65bd24f1142c34d111c0"),
}

_MIRRORED = (URLs.S3, "https://files.grouplens.org/datasets/", f"{URLs.GOOGLE}ml-animal-sounds-datasets/")
_ARCHIVE_SUFFIX = re.compile(r"\.(tgz|tar\.gz|tar|zip|tar\.bz2|tbz2|tar\.xz|txz)$", re.IGNORECASE)
_FOLDERS = {"data": "data", "archive": "archive", "model": "models", "models": "models"}


def _file_name(url: str) -> str:
    return urlsplit(url).path.rstrip("/").split("/")[-1] or url.rstrip("/").split("/")[-1]


def _archive_stem(name: str) -> str:
    return _ARCHIVE_SUFFIX.sub("", name)


def _folder_name(c_key: str) -> str:
    if c_key not in _FOLDERS:
        raise ValueError(f"`c_key` must be one of {sorted(_FOLDERS)}; received: c_key={c_key!r}")
    return _FOLDERS[c_key]


def resolve_url(url: str) -> str:
    """The URL actually fetched for ``url``: rewritten to ``$LAMINA_DATA_URL/<file name>`` for dataset URLs.

    Example:
        >>> os.environ["LAMINA_DATA_URL"] = "http://mirror.lan/datasets"
        >>> resolve_url(URLs.PETS)
        'http://mirror.lan/datasets/oxford-iiit-pet.tgz'
    """
    mirror = data_url_base()
    if mirror and url.startswith(_MIRRORED):
        return mirror + _file_name(url)
    return url


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def _check_problem(url: str, path: Path) -> str | None:
    """None if ``path`` matches the known size/sha256 of ``url`` (or nothing is known), else what differs."""
    known = _CHECKS.get(url)
    if known is None:
        return None
    size, sha256 = known
    got = path.stat().st_size
    if got != size:
        return f"expected {size:,} bytes, got {got:,}"
    if sha256 is not None and (got_sha := _sha256(path)) != sha256:
        return f"expected sha256 {sha256}, got {got_sha}"
    return None


def download_url(url: str, dest: str | Path | None = None, timeout: float | None = None,
                 show_progress: bool = True) -> Path:
    """Download ``url`` to ``dest`` safely: resumable, checked, and renamed into place only when complete.

    The bytes go to ``<dest>.part``; an existing ``.part`` is resumed with an HTTP ``Range`` request (a
    server that ignores it restarts the file). A dropped connection is resumed up to 3 times. When lamina
    knows the size/sha256 of ``url`` and the file differs, the file is deleted and an error is raised, so
    an existing good ``dest`` is never replaced by a bad one; with no length from the server and nothing
    known of ``url``, an archive must read through to its end (else it stays ``.part``, to be resumed).
    A call that finds another process downloading ``dest`` waits and returns its file. ``LAMINA_DATA_URL``
    applies (``resolve_url``).

    Args:
        url: an ``http(s)://`` or ``file://`` URL.
        dest: the file to write (a folder means ``<folder>/<file name of url>``); None: the working directory.
        timeout: seconds to wait for the connection and for each read; None means 30.
        show_progress: show a progress bar with bytes, rate and time left.

    Returns:
        The path of the downloaded file.

    Raises:
        DownloadError: no connection, an HTTP error, a dropped connection, a full disk, or a file that does
            not match its known size/checksum; the message names the URL or file and the fix.
    """
    name = _file_name(url)
    dest = Path.cwd() / name if dest is None else Path(dest).expanduser()
    if dest.is_dir():
        dest = dest / name
    dest.parent.mkdir(parents=True, exist_ok=True)
    with file_lock(dest, f"Waiting for another download of {name} to {dest}") as waited:
        if waited and dest.exists() and _check_problem(url, dest) is None:
            return dest  # the process we waited for has just downloaded it
        return _download(url, dest, timeout, show_progress)


def _download(url: str, dest: Path, timeout: float | None, show_progress: bool) -> Path:
    """``download_url`` for a caller that holds ``file_lock(dest)``."""
    name, part, source = _file_name(url), dest.with_name(dest.name + ".part"), resolve_url(url)
    with disk_errors(part):
        if urlsplit(source).scheme == "file":
            total = copy_local(source, part, show_progress)
        else:
            total = fetch(source, part, timeout or DEFAULT_TIMEOUT, show_progress)
    problem = _check_problem(url, part)
    if problem is not None:
        part.unlink()
        mirror = f" (fetched from the mirror {source}: check LAMINA_DATA_URL)" if source != url else ""
        raise DownloadError(f"the download of {url} does not match the known file {name}: {problem}{mirror}. "
                            f"The download was deleted ({dest} is untouched); delete {dest} if it is stale and "
                            "call again (with untar_data: force_download=True) to download it anew.")
    # With no length and no known size, only the archive itself can say whether it is whole
    if total is None and url not in _CHECKS and _ARCHIVE_SUFFIX.search(name) and (why := archive_problem(part)):
        raise DownloadError(f"the download of {source} was cut: the server sent no length, and the "
                            f"{part.stat().st_size:,} bytes received are not a complete archive ({why}). The "
                            f"partial file is kept at {part}: call again to resume it (with untar_data, "
                            "force_download=True starts over), or check the network / LAMINA_DATA_URL mirror.")
    os.replace(part, dest)
    return dest


def _folder(override: str | Path | None, folder: str, home: Path | None) -> Path:
    if override is not None:
        path = Path(override).expanduser()
    elif home is not None:
        path = home / folder
    else:
        return lamina_path(folder)
    path.mkdir(parents=True, exist_ok=True)
    return path


def untar_data(url: str, archive: str | Path | None = None, data: str | Path | None = None, c_key: str = "data",
               force_download: bool = False, base: str | Path | None = None,
               max_expanded_bytes: int | None = None) -> Path:
    """Download the archive at ``url`` once, extract it, and return the extracted folder.

    The archive is stored as ``$LAMINA_HOME/archive/<file>`` and extracted to
    ``$LAMINA_HOME/data/<file without .tgz/.tar.gz/.tar/.zip>``. When that folder exists the call returns
    at once, without network. An archive already on disk is reused if it matches its known size/checksum.
    Processes that call it at once (one per GPU) take turns: one downloads and extracts, the others reuse it.

    Example:
        >>> path = untar_data(URLs.PETS) / "images"
        >>> path = untar_data(URLs.PETS_SAMPLE) / "images"   # bundled with lamina, offline

    Args:
        url: the archive's URL (``URLs.*``, any ``http(s)://`` or ``file://`` URL); ``LAMINA_DATA_URL`` applies.
        archive: folder for the downloaded archive instead of ``$LAMINA_HOME/archive``.
        data: folder to extract into instead of ``$LAMINA_HOME/<c_key folder>``.
        c_key: ``'data'`` (default), ``'model'`` or ``'archive'``: which of lamina's folders to extract into.
        force_download: download and extract anew; the old archive and folder are replaced only after the new
            ones are complete.
        base: use this folder instead of ``$LAMINA_HOME`` for this call.
        max_expanded_bytes: refuse to extract an archive whose content takes more bytes. None: the free
            space on the data folder's disk, and 100 times the archive's size for an archive without a
            sha256 in lamina's table. Raise it for an archive you trust that expands more.

    Returns:
        The extracted folder.

    Raises:
        DownloadError: see ``download_url`` and ``extract_archive``.
    """
    name = _file_name(url)
    home = Path(base).expanduser() if base is not None else None
    data_dir = _folder(data, _folder_name(c_key), home)
    dest = data_dir / _archive_stem(name)
    if dest.exists() and not force_download:
        return dest
    archive_file = _folder(archive, "archive", home) / name
    # Locks in one order, the data folder then the archive (one path locked twice would wait for itself)
    with file_lock(dest, f"Waiting for another process that is downloading or extracting {name}"):
        if dest.exists() and not force_download:
            return dest  # the process we waited for has made it
        archive_lock = file_lock(archive_file, f"Waiting for another download of {name}")
        with archive_lock if archive_file != dest else nullcontext():
            _get_archive(url, archive_file, force_download)
        checked = _CHECKS.get(url, (0, None))[1] is not None  # its sha256 was just verified
        return extract_locked(archive_file, dest, max_expanded_bytes, checked)


def _get_archive(url: str, archive_file: Path, force_download: bool) -> None:
    """Download ``archive_file`` unless a good copy is on disk; the caller holds its lock."""
    if force_download:
        archive_file.with_name(archive_file.name + ".part").unlink(missing_ok=True)  # anew: no stale resume
    elif archive_file.exists():
        if (problem := _check_problem(url, archive_file)) is None:
            return
        print(f"{archive_file} is not the known file ({problem}); downloading a new version of this dataset...")
    _download(url, archive_file, None, True)
