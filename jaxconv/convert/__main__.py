"""python -m jaxconv.convert --from timm:resnet50 --checkpoint FILE --out DIR

Converts a timm / torchvision state_dict file or a Keras weights file into a jaxconv checkpoint
directory (see `jaxconv.convert.files`). Fine-tune from it with `--config.train.init_from=DIR`.
A bad input prints one line (or the table of offending keys) and exits with status 1.
"""

import argparse
import sys

from jaxconv.convert.core import TransplantError
from jaxconv.convert.files import ConvertError, convert_file, parse_source, save_converted


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog='python -m jaxconv.convert', description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--from', dest='source', required=True,
                        help='LIBRARY:NAME, e.g. timm:resnet50, torchvision:googlenet, '
                             'keras:EfficientNetB0')
    parser.add_argument('--checkpoint', required=True, help='the weights file')
    parser.add_argument('--out', required=True, help='a new (or empty) output directory')
    parser.add_argument('--num_classes', type=int, default=None,
                        help='classes of the file\'s classifier (default: read off the file; '
                             'Keras .weights.h5: 1000)')
    parser.add_argument('--image_size', type=int, default=None,
                        help='input side the model is built at (default: the model\'s own)')
    args = parser.parse_args(argv)
    try:
        layout = parse_source(args.source)
        converted = convert_file(layout, args.checkpoint, num_classes=args.num_classes,
                                 image_size=args.image_size)
        save_converted(args.out, converted)
    except TransplantError as error:
        print(f'error: {args.checkpoint} does not match {args.source}: {error}', file=sys.stderr)
        return 1
    except (ConvertError, ImportError) as error:
        print(f'error: {error}', file=sys.stderr)
        return 1
    info = converted.info
    print(f'wrote {args.out}: {info["model"]} ({info["num_classes"]} classes) from '
          f'{info["source"]}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
