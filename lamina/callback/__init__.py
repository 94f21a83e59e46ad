"""fastai's module paths for callbacks (``lamina.callback.hook`` ...): thin re-exports of `lamina.callbacks`.

lamina's callbacks live in `lamina.callbacks` (one concern per file); fastai code imports them by fastai's paths,
``from fastai.callback.hook import *``, so each module here re-exports the names fastai users take from that path.
Nothing is defined here.
"""
